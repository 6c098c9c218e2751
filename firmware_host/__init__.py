"""firmware_host: wire protocol, serial transport, board agent, emulated board, HIL harness.

The board agent (``firmware_host.board``) and the wire protocol it uses import only the
standard library and numpy (plus a TFLite runtime), so they can be copied to a board.
"""
