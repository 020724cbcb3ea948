"""The human review queue."""

from demur.queue.base import CandidateAnswer, ReviewQueue, Ticket, TicketRequest
from demur.queue.sqlite import SqliteQueue

__all__ = ["CandidateAnswer", "ReviewQueue", "SqliteQueue", "Ticket", "TicketRequest"]
