"""MetaGraspNet on-disk format: synthetic generator, reader, COCO conversion, splits."""
