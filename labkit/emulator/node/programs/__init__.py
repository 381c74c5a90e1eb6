"""Programs that play container images on the emulated node, one module per image family.

Each is started as its own process (``python -E -s -S <file>``), so the pod behaves like a container:
it can be killed, restarted and logged on its own. They use the standard library only, and plain
sockets with a thread per connection rather than asyncio (see :mod:`._serving`), because a pod should
be up in ~30 ms: importing asyncio alone would double that. Every module also runs as
``python -m labkit.emulator.node.programs.<name>`` for trying it by hand.

Configuration comes the way a container's does, through the environment: ``LABKIT_LISTEN``
(``host:port``, set by the node; ``--listen host:port`` on the command line wins), ``HOSTNAME`` (the
pod's name) and whatever the image's own program reads (``SERVICE_VERSION`` for helloworld).
"""
