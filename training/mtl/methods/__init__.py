"""One module per MTL method; each registers itself with `training.mtl.registry.register`."""
