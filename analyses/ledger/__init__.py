"""The claims ledger: one command that runs every experiment behind the claims of the progressive-cramming paper
and Kuratov et al. on a model, resumably, and writes which claims hold, by how much and how sure we are.

    from analyses.ledger import reproduce
    ledger = reproduce(["smollm2-135m"], "cpu", "runs/ledger")      # = python scripts/reproduce.py ...

Modules: :mod:`.protocols` (sizes per protocol), :mod:`.steps` (the experiments, :mod:`.cram_steps` and
:mod:`.eval_steps`), :mod:`.plan` (expected time from a measured step cost), :mod:`.run` (resumable execution),
:mod:`.claims` (the registry; ours from :mod:`.extract` / :mod:`.extract_eval`), :mod:`.verdict` (the rule),
:mod:`.compare` (across models), :mod:`.ledger`, :mod:`.render` and :mod:`.figure` (the output).
"""

from .claims import CLAIMS, Claim, Row
from .ledger import Ledger
from .protocols import PROTOCOLS, Protocol, get_protocol
from .run import reproduce
from .verdict import RULE

__all__ = ["CLAIMS", "PROTOCOLS", "RULE", "Claim", "Ledger", "Protocol", "Row", "get_protocol", "reproduce"]
