"""One module per lab for what only that lab needs: its predictions, its analysis, its pictures.

:class:`~labkit.lab.Lab` and its cluster handles serve every lab alike; a lab's teaching point (Lab 1's shares
of traffic per route, Lab 3's bytes on the wire) is worked out here, from what the handles read, so a new lab
adds a module instead of methods on ``Lab``.

- :mod:`labkit.labs.multi_primary`: Lab 1, routes and expected shares from a sidecar's endpoint weights, the
  topology of its calls, on any multi-network mesh.
- :mod:`labkit.labs.primary_remote`: Lab 2, who configures the remote's proxies and who signed their
  certificates, the demo app's answers, the path of calls and of the remote's configuration, and the waits that
  show the remote frozen and healed.
- :mod:`labkit.labs.nlb_headless`: Lab 3, the two captures at the load balancer, side by side.
- :mod:`labkit.labs.replicated_control_planes`: Lab 4, the hand-made CA, what a federated call answered and the
  path it took.
- :mod:`labkit.labs.troubleshooting`: Lab 6, Lab 1's mesh on two clusters, and each exercise's mistake made
  (``break_…``) and put right (``fix_…``) the way a user does it, with the readings its checkpoints use.
"""
