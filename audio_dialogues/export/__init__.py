"""Writing dialogues in the chat formats of the audio language models that train on them."""
