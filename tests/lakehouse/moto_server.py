"""The local AWS server the tests run against: moto's server, with a
Kinesis shard split as Kinesis does it and Glue's optimistic lock.

moto's SplitShard moves the parent's records into its children and goes on
routing new records to the closed parent (the first shard whose range holds
the key), whose reads never end. Kinesis keeps a closed parent's records
where they are, routes new records only to open shards, and ends a closed
shard's reads once they are read (no next iterator): the order a reader of
a resharded stream depends on (parents before children). These three
behaviours are replaced here.

moto's Glue UpdateTable ignores `VersionId`: of two writers that read the
same version of a table's entry, both updates succeed and the second
silently drops the first's commit (an Iceberg snapshot, rows and all).
Glue refuses an update whose `VersionId` is not the table's current one
with ConcurrentModificationException, which is what Iceberg's commit
protocol on Glue rests on; so does this server.

Everything else is moto's.

    python moto_server.py -H 127.0.0.1 -p PORT
"""

import threading

from moto.glue.exceptions import GlueClientError
from moto.glue.responses import GlueResponse
from moto.kinesis import models, utils
from moto.kinesis.exceptions import InvalidArgumentError
from moto.server import main
from moto.utilities.utils import md5_hash


def split_shard(self, shard_to_split, new_starting_hash_key):
    start = int(new_starting_hash_key)
    parent = self.shards[shard_to_split]
    if not parent.starting_hash < start < parent.ending_hash:
        raise InvalidArgumentError(f"NewStartingHashKey {start} is not inside {shard_to_split}")
    if not parent.is_open:
        raise InvalidArgumentError(f"{shard_to_split} has already been merged or split")
    last_id = max(shard._shard_id for shard in self.shards.values())
    for offset, (low, high) in enumerate([(parent.starting_hash, start - 1), (start, parent.ending_hash)]):
        child = models.Shard(last_id + 1 + offset, starting_hash=low, ending_hash=high,
                             parent=parent.shard_id)
        self.shards[child.shard_id] = child
    parent.is_open = False


def get_shard_for_key(self, partition_key, explicit_hash_key):
    if not isinstance(partition_key, str) or len(partition_key) > 256:
        raise InvalidArgumentError("partition_key")
    if explicit_hash_key:
        key = int(explicit_hash_key)
        if key >= 2**128:
            raise InvalidArgumentError("explicit_hash_key")
    else:
        key = int(md5_hash(partition_key.encode("utf-8")).hexdigest(), 16)
    for shard in self.shards.values():
        if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
            return shard
    return None


_get_records = models.KinesisBackend.get_records


def get_records(self, stream_arn, shard_iterator, limit):
    next_iterator, records, millis_behind = _get_records(self, stream_arn, shard_iterator, limit)
    stream_name, shard_id, last = utils.decompose_shard_iterator(next_iterator)
    shard = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name).get_shard(shard_id)
    if not shard.is_open and int(last) >= (shard.get_max_sequence_number() if shard.records else 0):
        next_iterator = None
    return next_iterator, records, millis_behind


class ConcurrentModificationException(GlueClientError):
    def __init__(self, message):
        super().__init__("ConcurrentModificationException", message)


# The server answers requests on several threads: the version check and the
# update are one step.
_glue_updates = threading.Lock()
_update_table = GlueResponse.update_table


def update_table(self):
    version = self._get_param("VersionId")
    with _glue_updates:
        if version is not None:
            name = self._get_param("TableInput").get("Name")
            table = self.glue_backend.get_table(self._get_param("DatabaseName"), name)
            if str(table._current_version) != str(version):
                raise ConcurrentModificationException(
                    f"table {name} is at version {table._current_version}, not {version}")
        return _update_table(self)


models.Stream.split_shard = split_shard
models.Stream.get_shard_for_key = get_shard_for_key
models.KinesisBackend.get_records = get_records
GlueResponse.update_table = update_table

if __name__ == "__main__":
    main()
