"""Running policies on robots, with numpy and a policy bundle (never jax):

* ``policy``: loading a bundle (numpy forward or its exported C), refusing one that fails its
  golden pairs; action-chunking bundles one tick at a time;
* ``safety``: the guard between a policy and a robot (e-stop, watchdog, NaN/range checks,
  clipping, rate limit);
* ``observation``: observations and actions as labelled messages, by the bundle's layouts;
* ``ros_node``: the ROS 2 policy node (rclpy, imported only there);
* ``sim_bridge``: a sims env as a ROS 2 node (uses ``robotrl`` and jax: a development tool);
* ``practice``: FastRLAP's autonomous practice on the RC car (a host env that ``robotrl train``
  runs; its ``SimCar`` uses the simulator).
"""
