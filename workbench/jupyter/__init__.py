"""The notebook layer: magics, the offline Netron viewer and its two transports.

Nothing here is imported by ``import workbench``; IPython, tornado and
jupyter_server are imported only by the modules that need them.
"""
