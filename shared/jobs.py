"""Task names, their queues and payload shapes: the contract between web/ and workers/."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    CONVERSATIONS = "conversations"
    RECEIPTS = "receipts"
    POOL = "pool"


class TaskName(StrEnum):
    # payload: conversation id
    CREATE_CONVERSATION = "smsproxy.create_conversation"
    # payload: InboundSms.to_payload()
    RELAY_INBOUND = "smsproxy.relay_inbound"
    # payload: a multi-part group id and the instance (opening) of it to flush; runs after
    # SMSPROXY_CONCAT_TIMEOUT_SECONDS
    FLUSH_CONCAT = "smsproxy.flush_concat"
    # payload: outbound message id (the record is in Redis)
    SEND_SMS = "smsproxy.send_sms"
    # payload: DeliveryReceipt.to_payload()
    RECORD_RECEIPT = "smsproxy.record_receipt"
    # payload: {"conversation_id": ..., "event": "active|failed|closed|expired"}
    NOTIFY_CALLBACK = "smsproxy.notify_callback"
    # payload: {"from": msisdn, "to": msisdn, "message_id": ...}
    NOTIFY_OUT_OF_SESSION = "smsproxy.notify_out_of_session"
    # payload: {"conversation_id": ..., "event": "participant.opted_out|participant.opted_in",
    #           "message_id": the text that made the change, "participant": "0" or "1"}
    NOTIFY_PARTICIPANT = "smsproxy.notify_participant"
    # no payload
    MAINTAIN_POOL = "smsproxy.maintain_pool"
    EXPIRE_CONVERSATIONS = "smsproxy.expire_conversations"
    SWEEP_STRANDED = "smsproxy.sweep_stranded"


QUEUE_OF: dict[TaskName, Queue] = {
    TaskName.CREATE_CONVERSATION: Queue.CONVERSATIONS,
    TaskName.RELAY_INBOUND: Queue.INBOUND,
    TaskName.FLUSH_CONCAT: Queue.INBOUND,
    TaskName.SEND_SMS: Queue.OUTBOUND,
    TaskName.RECORD_RECEIPT: Queue.RECEIPTS,
    TaskName.NOTIFY_CALLBACK: Queue.CONVERSATIONS,
    TaskName.NOTIFY_OUT_OF_SESSION: Queue.CONVERSATIONS,
    TaskName.NOTIFY_PARTICIPANT: Queue.CONVERSATIONS,
    TaskName.MAINTAIN_POOL: Queue.POOL,
    TaskName.EXPIRE_CONVERSATIONS: Queue.CONVERSATIONS,
    TaskName.SWEEP_STRANDED: Queue.INBOUND,
}
