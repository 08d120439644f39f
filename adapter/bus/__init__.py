"""The bridge between the UFTP network and the operator's message broker.

`port` is the contract a broker adapter keeps, `events` the CloudEvents model and its
bindings, `memory` an in-memory adapter for tests; the RabbitMQ adapter lives in `rabbitmq`
(it needs the ``rabbitmq`` extra). Nothing here is imported by the participant unless a
``[bus]`` is configured.
"""
