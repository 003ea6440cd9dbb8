"""The image lifecycle, independent of HTTP and AMQP: the changes that drive an image and its
operations through their states, and the one table of transitions that carries them out."""
