"""net-queue's serializer modules, under the names each generation used:
``nq.utils.streamtools`` (net-queue 1.1) and ``nq.utils.stream`` (2.x)."""
