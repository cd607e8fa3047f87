"""How Ansible runs: ansible-runner inside a sandbox that can reach only the builder.

- entry: `kiln-ansible`, the command Packer's Ansible provisioner runs (outside the sandbox)
- molecule: the `ansible-playbook` role tests' Molecule runs, which sandboxes the role's playbooks
- inside: ansible-runner and the event writer (inside the sandbox)
- sandbox: the bubblewrap command line; environment: its allow-listed environment
- bridge: the unix-socket bridge to a VM builder's loopback SSH port
- config: kiln's ansible.cfg; rundir: the run's tmpfs directory and what is kept of it
"""
