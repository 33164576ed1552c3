"""The `datasets` side: the builder, audio decoding, local audio resolution and the registration with `load_dataset`."""
