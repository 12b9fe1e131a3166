"""Hostile or mistyped input is one clear error (the project's own error type, exit status 2 on
the command line), never a traceback or a silently changed value."""

from __future__ import annotations

import pytest

from cluster.devices import parse_devices
from cluster.errors import PlanError
from cluster.hosts import parse_hostfile, parse_hosts_flag

# digits that str.isdigit() accepts but are not ASCII digits: superscript two, Arabic-Indic
# three, full-width five; and a number too long for int() to read
ODD_NUMBERS = ["\u00b2", "\u0663", "\uff15", "1" * 5000]


@pytest.mark.parametrize("value", ODD_NUMBERS)
def test_odd_numbers_in_hosts_and_devices_are_plan_errors(value):
    cases = [(parse_hostfile, f"node1 slots={value}", "hostfile:1: host node1: bad slot count"),
             (parse_hostfile, f"node1 port={value}", "hostfile:1: host node1: port="),
             (parse_hosts_flag, f"node1:{value}", "--hosts node1:.*bad slot count"),
             (parse_devices, value, "--devices"),
             (parse_devices, f"0-{value}", "--devices"),
             (parse_hostfile, f"node1 devices={value}", "hostfile:1: host node1: devices=")]
    for parse, text, message in cases:
        with pytest.raises(PlanError, match=message):
            parse(text)
