"""Loading and saving networks: darknet ``.weights`` files, training checkpoints, the official
weights, and the one policy that turns ``--model`` / ``--weights`` into a network."""
