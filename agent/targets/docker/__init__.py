"""Docker deploy targets for the action server.

`host.DockerHostTarget` drives one Docker engine, reached locally
(`engine.local_engine`) or over SSH (`ssh.SshEngine`); `swarm.SwarmTarget`
drives a Swarm service. Both sit behind `agent.targets.base.ActionServerTarget`.
"""
