"""The training input pipeline: darknet's augmentation and the seeded multi-scale loader that
turns a dataset into minibatches of network inputs and targets."""
