"""The control center: the household in a web page, served on 127.0.0.1.

The page talks only to this server, and the server only to the local node's
control API (``accord.control``), never to Zenoh: what the page may do is what
``accord`` on the command line may do, and no more. ``guard`` keeps other web
pages and other hosts out; ``hub`` follows the node and fans its changes out to
every open page; ``actions`` maps the page's requests to control methods.
"""
