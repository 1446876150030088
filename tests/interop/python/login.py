"""The Python `atproto` SDK judging our PDS: its pydantic models reject a response of the wrong shape.

Usage: PDS_URL=http://127.0.0.1:PORT PDS_HANDLE=alice.test PDS_PASSWORD=... [PDS_DID=did:plc:...] \
       [PLC_URL=http://127.0.0.1:PORT] tests/interop/python/.venv/bin/python tests/interop/python/login.py

Steps: describe_server, login (fetch_bsky_profile=False: we serve no app.bsky), get_session (did
and handle as expected), resolve_handle, describe_repo, a refresh of the session, and a fresh client
resuming from the exported session string. With PLC_URL: the DID resolved through that directory
(handle, this PDS, signing key), and the account's creation events replayed from the firehose with
`FirehoseSubscribeReposClient` (#identity, #account, #commit, #sync in order; the commit's CAR and
its signature checked with the key the directory serves), then a post created through the SDK and
its #commit received the same way (op, CID, record in the CAR, signature, prevData).
Exit 0 with a JSON summary on stdout; otherwise exit 1 with the failing step and error on stderr.
"""

import json
import os
import sys
import threading
import time
import traceback

import libipld
from atproto import CAR, Client, FirehoseSubscribeReposClient, IdResolver, models, verify_signature
from atproto_firehose import parse_subscribe_repos_message


def main() -> int:
    service = os.environ.get('PDS_URL')
    handle = os.environ.get('PDS_HANDLE')
    password = os.environ.get('PDS_PASSWORD')
    if not service or not handle or not password:
        print('login.py: set PDS_URL, PDS_HANDLE and PDS_PASSWORD (PDS_DID optional)', file=sys.stderr)
        return 2
    expected_did = os.environ.get('PDS_DID')
    plc_url = os.environ.get('PLC_URL')

    summary: dict = {'service': service, 'handle': handle, 'steps': []}
    current = 'start'

    def check(cond: bool, what: str, got: object = None) -> None:
        if not cond:
            raise AssertionError(what if got is None else f'{what}: got {got!r}')

    def step(name: str, fn):  # noqa: ANN001, ANN202
        nonlocal current
        current = name
        started = time.perf_counter()
        detail = fn() or {}
        summary['steps'].append({'step': name, 'ms': round((time.perf_counter() - started) * 1000), **detail})

    try:
        client = Client(base_url=service)
        did_box: dict = {}

        def describe_server() -> dict:
            res = client.com.atproto.server.describe_server()
            check(res.did.startswith('did:'), 'describe_server.did', res.did)
            return {'did': res.did, 'availableUserDomains': res.available_user_domains}

        def login() -> dict:
            profile = client.login(handle, password, fetch_bsky_profile=False)
            check(profile is None, 'login returned a profile without fetch_bsky_profile', profile)
            return {}

        def get_session() -> dict:
            res = client.com.atproto.server.get_session()
            check(res.handle == handle, 'get_session.handle', res.handle)
            check(res.did.startswith('did:plc:'), 'get_session.did', res.did)
            if expected_did is not None:
                check(res.did == expected_did, 'get_session.did', res.did)
            did_box['did'] = res.did
            return {'did': res.did, 'active': res.active, 'email': res.email}

        def resolve_handle() -> dict:
            res = client.com.atproto.identity.resolve_handle(models.ComAtprotoIdentityResolveHandle.Params(handle=handle))
            check(res.did == did_box['did'], 'resolve_handle.did', res.did)
            return {}

        def describe_repo() -> dict:
            res = client.com.atproto.repo.describe_repo(models.ComAtprotoRepoDescribeRepo.Params(repo=did_box['did']))
            check(res.did == did_box['did'] and res.handle == handle, 'describe_repo', (res.did, res.handle))
            check(res.handle_is_correct, 'describe_repo.handle_is_correct', res.handle_is_correct)
            return {'collections': res.collections}

        def refresh() -> dict:
            before = client.export_session_string()
            # What the client does by itself when the access token nears expiry.
            res = client._refresh_and_set_session()  # noqa: SLF001
            check(res.did == did_box['did'], 'refresh_session.did', res.did)
            check(client.export_session_string() != before, 'refresh did not rotate the session')
            again = client.com.atproto.server.get_session()
            check(again.did == did_box['did'], 'get_session after refresh', again.did)
            return {}

        def resume() -> dict:
            fresh = Client(base_url=service)
            fresh.login(session_string=client.export_session_string(), fetch_bsky_profile=False)
            res = fresh.com.atproto.server.get_session()
            check(res.did == did_box['did'] and res.handle == handle, 'get_session after resume', (res.did, res.handle))
            return {}

        key_box: dict = {}

        def resolve_did() -> dict:
            data = IdResolver(plc_url=plc_url, timeout=10).did.resolve_atproto_data(did_box['did'])
            check(data.handle == handle, 'the directory names handle', data.handle)
            check(data.pds is not None and data.pds.rstrip('/').split(':')[-1] == service.split(':')[-1],
                  'the directory names this PDS', data.pds)
            check(data.signing_key is not None and data.signing_key.startswith('did:key:'), 'signing key', data.signing_key)
            key_box['key'] = data.signing_key
            return {'pds': data.pds, 'signingKey': data.signing_key}

        def firehose() -> dict:
            # Replays the log from the start and collects this account's creation events.
            did = did_box['did']
            seen: list = []
            errors: list = []
            ws = 'ws://' + service.split('://', 1)[1].rstrip('/') + '/xrpc'
            client_ws = FirehoseSubscribeReposClient(params={'cursor': 0}, base_uri=ws, recv_timeout=10)

            def on_message(frame) -> None:  # noqa: ANN001
                msg = parse_subscribe_repos_message(frame)
                who = getattr(msg, 'repo', None) or getattr(msg, 'did', None)
                if who != did:
                    return
                seen.append((frame.type, msg))
                if frame.type == '#sync':
                    client_ws.stop()

            def on_error(err: BaseException) -> None:
                errors.append(err)
                client_ws.stop()

            timer = threading.Timer(20, client_ws.stop)
            timer.start()
            try:
                client_ws.start(on_message, on_error)
            finally:
                timer.cancel()
            if errors:
                raise errors[0]
            types = [t for t, _ in seen]
            check(types == ['#identity', '#account', '#commit', '#sync'], 'creation events on the firehose', types)
            seqs = [m.seq for _, m in seen]
            check(seqs == sorted(seqs) and len(set(seqs)) == 4, 'seqs increasing', seqs)
            identity, account, commit, sync = (m for _, m in seen)
            check(identity.handle == handle, '#identity.handle', identity.handle)
            check(account.active is True, '#account.active', account.active)

            car = CAR.from_bytes(commit.blocks)
            check(str(car.root) == str(commit.commit), '#commit CAR root', (str(car.root), str(commit.commit)))
            block = car.blocks.get(car.root)
            check(block is not None, 'the commit block is in the CAR')
            check(block['did'] == did and block['version'] == 3 and block['rev'] == commit.rev, 'commit object', block)
            unsigned = {k: v for k, v in block.items() if k != 'sig'}
            signed = verify_signature(key_box['key'], libipld.encode_dag_cbor(unsigned), block['sig'])
            check(signed, 'the commit signature verifies with the key the directory serves')

            sync_car = CAR.from_bytes(sync.blocks)
            check(str(sync_car.root) == str(commit.commit), '#sync root is the commit', str(sync_car.root))
            check(sync.rev == commit.rev, '#sync.rev', sync.rev)
            return {'seqs': seqs, 'rev': commit.rev, 'ops': len(commit.ops)}

        def firehose_commit() -> dict:
            # A post written through the SDK, then its #commit received by FirehoseSubscribeReposClient:
            # the op (create, path, CID as the write returned), the record in the CAR, the signature.
            did = did_box['did']
            text = f'python judge {time.time_ns()}'
            created = client.com.atproto.repo.create_record(models.ComAtprotoRepoCreateRecord.Data(
                repo=did, collection='app.bsky.feed.post',
                record={'$type': 'app.bsky.feed.post', 'text': text, 'createdAt': client.get_current_time_iso()}))
            rkey = created.uri.rsplit('/', 1)[-1]
            found: list = []
            errors: list = []
            ws = 'ws://' + service.split('://', 1)[1].rstrip('/') + '/xrpc'
            client_ws = FirehoseSubscribeReposClient(params={'cursor': 0}, base_uri=ws, recv_timeout=10)

            def on_message(frame) -> None:  # noqa: ANN001
                if frame.type != '#commit':
                    return
                msg = parse_subscribe_repos_message(frame)
                if msg.repo == did and any(op.path == f'app.bsky.feed.post/{rkey}' for op in msg.ops):
                    found.append(msg)
                    client_ws.stop()

            def on_error(err: BaseException) -> None:
                errors.append(err)
                client_ws.stop()

            timer = threading.Timer(20, client_ws.stop)
            timer.start()
            try:
                client_ws.start(on_message, on_error)
            finally:
                timer.cancel()
            if errors:
                raise errors[0]
            check(len(found) == 1, 'the #commit of the post arrived')
            commit = found[0]
            check(str(commit.commit) == created.commit.cid and commit.rev == created.commit.rev,
                  '#commit is the commit createRecord returned', (str(commit.commit), commit.rev))
            (op,) = commit.ops
            check(op.action == 'create' and str(op.cid) == created.cid, '#commit op', (op.action, str(op.cid)))
            car = CAR.from_bytes(commit.blocks)
            record = car.blocks.get(op.cid)
            check(record is not None and record['text'] == text, 'the record is in the #commit CAR', record)
            block = car.blocks.get(car.root)
            unsigned = {k: v for k, v in block.items() if k != 'sig'}
            check(verify_signature(key_box['key'], libipld.encode_dag_cbor(unsigned), block['sig']),
                  'the commit signature verifies')
            check(commit.prev_data is not None, '#commit.prevData (sync v1.1)', commit.prev_data)
            return {'seq': commit.seq, 'rev': commit.rev}

        optional = [('resolve_did', resolve_did), ('firehose', firehose), ('firehose_commit', firehose_commit)] if plc_url else []
        for name, fn in [
            ('describe_server', describe_server),
            ('login', login),
            ('get_session', get_session),
            ('resolve_handle', resolve_handle),
            ('describe_repo', describe_repo),
            ('refresh_session', refresh),
            ('resume_from_session_string', resume),
            *optional,
        ]:
            step(name, fn)
    except Exception as err:  # noqa: BLE001 — every failure is reported the same way
        response = getattr(err, 'response', None)
        summary['ok'] = False
        summary['failure'] = {
            'step': current,
            'type': type(err).__name__,
            'message': str(err),
            'status': getattr(response, 'status_code', None),
            'content': repr(getattr(response, 'content', None)),
        }
        print(json.dumps(summary, default=str))
        print(f'login.py: step {current} failed: {type(err).__name__}: {err}', file=sys.stderr)
        traceback.print_exc()
        return 1

    summary['ok'] = True
    print(json.dumps(summary, default=str))
    return 0


if __name__ == '__main__':
    sys.exit(main())
