"""Transfer learning vs training from scratch: learning curves on a 1-D target (photometric redshifts, z < 1 ->
z > 1) and an image target (all-sky frames, camera A -> camera B), with ImageNet and in-domain pre-training."""
