"""BEP 44 pointers over a private loopback DHT of 8 real libtorrent sessions (protocol §8.3)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from scryp.core.pointer import (
    RECORD_MAX_BYTES,
    SALT,
    PointerRecord,
    SignedItem,
    UnknownKey,
    agreed,
    encode_record,
    verify_item,
)
from scryp.crypto import KeyPair
from scryp.errors import BadSignature

from .conftest import PrivateDHT

pytestmark = pytest.mark.slow

NETWORK = hashlib.sha256(b"test network").digest()
SESSIONS = 8


def server_key(i: int) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"server %d" % i).digest())


def record(round_number: int, api: str = "127.0.0.1:6882") -> PointerRecord:
    state = hashlib.sha256(b"state %d" % round_number).digest()
    return PointerRecord(
        network=NETWORK,
        round=round_number,
        state_root=state,
        infohash=state[:20],
        infohash_v2=hashlib.sha256(state).digest(),
        recent=(bytes(20),),
        api=api,
    )


def test_pointer_put_by_one_is_read_by_another(dht: PrivateDHT) -> None:
    quorum = [server_key(i) for i in range(3)]
    publics = [k.public for k in quorum]

    async def body() -> None:
        async with dht(SESSIONS) as swarms:
            # Each server puts from its own session; the round differs for server 2.
            rounds = [7, 7, 6]
            puts = await asyncio.gather(
                *(
                    swarms[i + 1].put_pointer(key, encode_record(record(rounds[i])))
                    for i, key in enumerate(quorum)
                )
            )
            assert all(p.num_success > 0 for p in puts)
            records, refused = await swarms[-1].get_pointers(publics)
            assert set(records) == set(publics)
            assert not refused
            assert records[quorum[0].public] == record(7)
            assert agreed(records, publics, NETWORK) == record(7)
            # A newer put replaces the item: libtorrent picks seq = found + 1.
            again = await swarms[2].put_pointer(quorum[0], encode_record(record(8)))
            assert again.seq == puts[0].seq + 1
            item = await swarms[5].get_item(quorum[0].public)
            assert item is not None
            assert verify_item(item, publics).round == 8
            # Two gets of one key at once on one session both get the item.
            both = await asyncio.gather(
                swarms[4].get_item(quorum[1].public), swarms[4].get_item(quorum[1].public)
            )
            assert both[0] is not None and both[1] is not None
            assert both[0].value == both[1].value == encode_record(record(7))
            # A key nobody published under: answered "nothing", well before the timeout.
            assert await swarms[3].get_item(server_key(99).public, timeout_s=5.0) is None

    asyncio.run(body())


def test_unknown_key_bad_signature_and_oversized_are_refused(dht: PrivateDHT) -> None:
    quorum = [server_key(i) for i in range(3)]
    publics = [k.public for k in quorum]
    outsider = server_key(42)

    async def body() -> None:
        async with dht(SESSIONS) as swarms:
            # An item under a key not in .keys is in the DHT, validly signed, and refused.
            put = await swarms[1].put_pointer(outsider, encode_record(record(1000)))
            assert put.num_success > 0
            foreign = await swarms[6].get_item(outsider.public)
            assert foreign is not None
            with pytest.raises(UnknownKey):
                verify_item(foreign, publics)
            assert (
                agreed({outsider.public: verify_item(foreign, [outsider.public])}, publics, NETWORK)
                is None
            )

            # A genuine quorum item, altered in transit (value or signature): refused.
            await swarms[2].put_pointer(quorum[0], encode_record(record(5)))
            item = await swarms[7].get_item(quorum[0].public)
            assert item is not None
            verify_item(item, publics)
            forged_value = encode_record(record(6))
            bad_sig = bytes([item.signature[0] ^ 1]) + item.signature[1:]
            for forged in (
                SignedItem(item.public, item.salt, item.seq, forged_value, item.signature),
                SignedItem(item.public, item.salt, item.seq, item.value, bad_sig),
                SignedItem(item.public, item.salt, item.seq + 1, item.value, item.signature),
            ):
                with pytest.raises(BadSignature):
                    verify_item(forged, publics)

            # Oversized: refused before it reaches the network ...
            big = record(9, api="127.0.0.1:6882")
            oversized = encode_record(big) + b"x" * RECORD_MAX_BYTES
            with pytest.raises(ValueError, match="limit"):
                await swarms[3].put_pointer(quorum[1], oversized)
            with pytest.raises(ValueError, match="limit"):
                encode_record(
                    PointerRecord(
                        big.network,
                        big.round,
                        big.state_root,
                        big.infohash,
                        big.infohash_v2,
                        certificate=b"c" * RECORD_MAX_BYTES,
                    )
                )
            # ... and libtorrent would indeed have dropped it silently: no node stores it.
            raw = await swarms[3].put_raw(
                quorum[2].libtorrent_secret(), quorum[2].public, oversized, SALT
            )
            assert raw.num_success == 0
            assert await swarms[4].get_item(quorum[2].public, timeout_s=5.0) is None

    asyncio.run(body())


def test_libtorrent_secret_form_is_stored_and_pynacl_form_is_not(dht: PrivateDHT) -> None:
    """protocol §2.3: dht_put_mutable_item wants the expanded secret, not seed || public."""
    key = server_key(7)
    other = server_key(8)

    async def body() -> None:
        async with dht(SESSIONS) as swarms:
            good = await swarms[1].put_raw(key.libtorrent_secret(), key.public, b"expanded")
            assert good.num_success > 0
            item = await swarms[6].get_item(key.public)
            assert item is not None
            assert item.value == b"expanded"
            assert item.seq == good.seq

            pynacl_secret = other.seed + other.public  # libsodium's 64-byte secret key
            bad = await swarms[1].put_raw(pynacl_secret, other.public, b"nacl form")
            assert bad.num_success == 0
            leaked = await swarms[6].get_item(other.public, timeout_s=5.0)
            assert leaked is None, (leaked.value, leaked.seq)

    asyncio.run(body())


def test_a_get_answers_though_a_departed_node_holds_up_its_lookup(dht: PrivateDHT) -> None:
    """protocol §8.6: a lookup that queried a node which has left ends only when libtorrent
    gives up on it (15 s); the get answers once no newer item has come for dht_get_settle_s."""
    key = server_key(0)
    get_timeout_s = 12.0

    async def body() -> None:
        async with dht(5) as swarms:
            put = await swarms[1].put_pointer(key, encode_record(record(3)))
            assert put.num_success > 0
            await swarms[4].close()  # every table holds it: a five-node DHT
            started = asyncio.get_running_loop().time()
            item = await swarms[2].get_item(key.public, timeout_s=get_timeout_s)
            elapsed_s = asyncio.get_running_loop().time() - started
            assert item is not None and item.value == encode_record(record(3))
            # Not a speed target: without the settle rule this get ends at its timeout.
            assert elapsed_s < get_timeout_s / 2, elapsed_s

    asyncio.run(body())
