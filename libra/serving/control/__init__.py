"""The live control loop: observe the rate and the fleet, ask the policy, provision."""
