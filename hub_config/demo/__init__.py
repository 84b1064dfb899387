"""``datahavn demo``: the whole workspace on this machine (:mod:`.run`), with simulated cohorts (:mod:`.cohorts`)."""
