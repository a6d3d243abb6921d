"""Channels' WebsocketCommunicator for transactional tests, importable without daphne.

`channels.testing` imports its live-server test case, which needs daphne; this project serves
with uvicorn and does not install daphne, so only that import is stubbed.

Channels' communicator also stops `database_sync_to_async` from closing connections, which
keeps a TestCase's transaction alive. These tests are transactional (the consumer works in
other threads), and that stop would leave those threads holding pooled connections past the
end of the run. So the connections are closed as they are in production.
"""

import importlib.util
import sys
import types

from asgiref.testing import ApplicationCommunicator

if importlib.util.find_spec("daphne") is None:
    _daphne = types.ModuleType("daphne")
    _daphne_testing = types.ModuleType("daphne.testing")
    _daphne_testing.DaphneProcess = None  # only ChannelsLiveServerTestCase uses it
    _daphne.testing = _daphne_testing
    sys.modules.setdefault("daphne", _daphne)
    sys.modules.setdefault("daphne.testing", _daphne_testing)

from channels.testing import WebsocketCommunicator as ChannelsWebsocketCommunicator


class WebsocketCommunicator(ChannelsWebsocketCommunicator):
    async def send_input(self, message):
        return await ApplicationCommunicator.send_input(self, message)

    async def receive_output(self, timeout=1):
        return await ApplicationCommunicator.receive_output(self, timeout)
