"""Handsets texting virtual numbers, and delivery receipts: webhooks to a local receiver."""

from collections.abc import Callable
from typing import Any

import pytest
from vonage import Vonage
from vonage_sms import SmsMessage

from sandbox.testing import SandboxProcess
from tests_sandbox_support import check_signature  # noqa: F401  (replaced below)
