"""What annotations are made of: clip references, annotation records and the public source metadata."""
