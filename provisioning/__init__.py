"""The technician's tool: turns a freshly imaged Pi reachable over SSH into an enrolled box.

Commands arrive with the provisioning issue; for now ``twm-provision`` only tells its version.
"""
