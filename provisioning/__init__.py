"""The technician's tool: turns a freshly imaged Pi reachable over SSH into an enrolled box, and
checks and updates boxes later (``twm-provision``, :mod:`provisioning.cli`; docs/provisioning.md).

The commands are :mod:`~provisioning.enroll`, :mod:`~provisioning.check`,
:mod:`~provisioning.update` and :mod:`~provisioning.fleet`; each is a list of steps
(:mod:`~provisioning.plan`) that look before they change anything, run over one SSH connection
(:mod:`~provisioning.remote`) whose host key is pinned (:mod:`~provisioning.known_hosts`).
"""
