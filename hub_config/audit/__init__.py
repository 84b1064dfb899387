"""The audit trail: the store (:mod:`.store`), the service that owns it (:mod:`.service`), the hub's
own events (:mod:`.hub`) and the auditors' page (:mod:`.page`, ``templates/audit.html``)."""
