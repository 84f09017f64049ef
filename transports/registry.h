/* The transport tables, each defined in its own folder. */
#ifndef NQ_TRANSPORTS_REGISTRY_H
#define NQ_TRANSPORTS_REGISTRY_H

#include "core/transport.h"

extern const nqi_transport nqi_tcp_transport;
extern const nqi_transport nqi_mqtt_transport;
extern const nqi_transport nqi_grpc_transport;

#endif
