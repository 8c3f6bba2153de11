"""Ctrl-C and SIGTERM during a drill: held while a fault is applied or taken back,
delivered when that step ends, never lost (CI once saw a drill finish with exit 0
after a SIGINT sent while its pause was being applied)."""

from __future__ import annotations

import os
import signal

import pytest

from spofless.drill.signals import Interrupted, SignalGate, signals_as_interrupt


def test_a_signal_during_a_step_is_delivered_when_the_step_ends() -> None:
    gate = SignalGate()
    done = []
    with pytest.raises(Interrupted), gate.held():
        gate.handler(signal.SIGINT, None)  # arrives mid-step: not raised here
        done.append("the step finished")
    assert done == ["the step finished"]
    with pytest.raises(Interrupted):
        gate.handler(signal.SIGTERM, None)  # outside a step: at once


def test_nested_steps_deliver_once_at_the_outermost_end() -> None:
    gate = SignalGate()
    with pytest.raises(Interrupted):
        with gate.held(), gate.held():
            gate.handler(signal.SIGINT, None)
            # the inner step ended: still held
        pytest.fail("not reached")  # pragma: no cover


def test_a_real_sigint_is_held_by_the_installed_handler() -> None:
    from spofless.drill.signals import held_signals

    with signals_as_interrupt():
        with pytest.raises(Interrupted), held_signals():
            os.kill(os.getpid(), signal.SIGINT)
            survived = True
        assert survived
