"""How ranks are started: the horovodrun command line. Imports no TensorFlow."""
