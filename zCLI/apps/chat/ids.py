"""One process's message ids: blocks claimed from the storage's one counter, no I/O.

Every process sharing a database claims its ids a block at a time from one counter
(``Storage.claim_ids``: one transaction), recorded as used before any of them is handed
out, so neither a restart (even after ``kill -9``) nor another process ever hands one
out twice. ``IdBlocks`` is that bookkeeping as a small class of its own, the way h2 keeps
its flow-control windows: the block being handed out, the next one claimed ahead once
less than half of one is left, and the highest id another process is known to have
handed out, above which this one's next ids must be (ids increase across the cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLUSTER_ID_BLOCK", "ID_BLOCK", "IdBlocks"]

# Ids per claim. Half a block is the headroom a claim's commit (an fsync) has before
# messages wait for it: 50,000 ids are 5 s at 10,000 messages a second, so a slow disk
# does not stall the traffic; a restart skips at most a block.
ID_BLOCK = 100_000
# On a cluster a process gives its block up whenever another hands out a higher id, so
# blocks are smaller there: a conversation between two processes burns a block per
# reply, and 2**53 ids must last (1,000 a reply: 28 years at 10,000 replies a second);
# a claim is then one write per 500 messages.
CLUSTER_ID_BLOCK = 1_000


@dataclass
class IdBlocks:
    block: int = ID_BLOCK  # ids per claim
    next_id: int = 1
    last: int = 0  # the last id of the block being handed out
    spare: tuple[int, int] | None = None  # the next block, claimed ahead
    claiming: bool = False  # a claim is on its way
    seen: int = 0  # the highest id another process is known to have handed out

    def left(self) -> int:
        """How many ids can be handed out before another claim is recorded."""
        left = self.last - self.next_id + 1
        if self.spare is not None:
            left += self.spare[1] - self.spare[0] + 1
        return left

    def take(self) -> int:
        """The next id (``left()`` said there is one)."""
        if self.next_id > self.last and self.spare is not None:
            (self.next_id, self.last), self.spare = self.spare, None
        self.next_id += 1
        return self.next_id - 1

    def wanted(self) -> int | None:
        """How many ids to claim now (the claim is then on its way), or None."""
        left = self.last - self.next_id + 1
        if left >= self.block // 2 or self.spare is not None or self.claiming:
            return None
        self.claiming = True
        return self.block

    def claimed(self, first: int, last: int) -> None:
        """The storage recorded ``first..last`` as this process's. A block below an id
        another process handed out meanwhile is dropped (``wanted`` claims again)."""
        self.claiming = False
        if last <= self.seen:
            return
        if self.next_id > self.last or first == self.last + 1:
            if self.next_id > self.last:
                self.next_id = first
            self.last = last
        else:
            self.spare = (first, last)

    def unclaimed(self) -> None:
        """The claim failed (the storage is away): the next request asks again."""
        self.claiming = False

    def observe(self, message_id: int) -> None:
        """Another process handed out ``message_id``: the ids handed out here from now
        on must be greater, so a block below it is given up (blocks are disjoint: a
        block is wholly below or wholly above). The next claim is above every id handed
        out so far, since every process claims from the one counter."""
        self.seen = max(self.seen, message_id)
        if message_id >= self.next_id:
            self.last = self.next_id - 1
            if self.spare is not None and self.spare[0] <= message_id:
                self.spare = None
