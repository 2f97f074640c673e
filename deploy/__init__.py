"""Running policies on robots: the ROS 2 policy node with its safety layer, and the RC car's
autonomous practice loop. Needs a policy bundle, never jax."""
