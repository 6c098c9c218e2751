"""firmware_host: what runs on a board: the agent, the wire protocol, byte streams, bundles.

The whole folder imports only the standard library and numpy (plus a TFLite runtime inside
functions), so it is copied to a board as it is; the host's side of a HIL run is ``hil``.
"""
