"""The package's version, in a module of its own: importing it does not import the package root, whose
import registers the builder (and so the dataset layer) -- modules of every layer name the version."""

__version__ = "0.1.0"
