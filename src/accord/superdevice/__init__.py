"""SuperDevice: the circle's hardware as one device, and the links it reaches it by.

``api`` holds :class:`SuperDevice` and its typed proxies; ``links`` holds how it
reaches the circle: in process (``NodeLink``) or through a node's control socket
(``ControlLink``).
"""

from accord.superdevice.api import SuperDevice

__all__ = ["SuperDevice"]
