/* The transports built into this libnq: the only place that names them.
 * A build without MQTT or gRPC (-DNQ_WITH_MQTT=OFF, -DNQ_WITH_GRPC=OFF)
 * leaves them out, and nq_open reports NQ_ENOTSUP for their protocols. */
#include "transports/registry.h"

const nqi_transport *nqi_transport_for(nq_protocol protocol)
{
    switch (protocol) {
    case NQ_TCP:
        return &nqi_tcp_transport;
#ifdef NQ_WITH_MQTT
    case NQ_MQTT:
        return &nqi_mqtt_transport;
#endif
#ifdef NQ_WITH_GRPC
    case NQ_GRPC:
        return &nqi_grpc_transport;
#endif
    default:
        return NULL;
    }
}
