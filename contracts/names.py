"""Names on the wire that several packages share: exchanges and command queues."""

COMMANDS_EXCHANGE = "kiln.commands"
EVENTS_EXCHANGE = "kiln.events"
DEAD_LETTER_EXCHANGE = "kiln.dead-letter"
CANCELS_EXCHANGE = "kiln.cancels"

CREATE_QUEUE = "kiln.image.create"
DELETE_QUEUE = "kiln.image.delete"
DEAD_LETTER_QUEUE = "kiln.dead-letter"
