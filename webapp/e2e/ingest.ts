/**
 * Log lines for the metering process of the "real" server set (`suiftly run`): sf1 lines
 * (docs/haproxy/FORMAT.md) as HAProxy writes them for a customer's API key, sent to its UDP
 * listener (`E2E_INGEST_UDP`). The fields metering attributes a line by are the customer id,
 * the service type and the network; the key's fingerprint goes where HAProxy puts it.
 * Same shape as `tests/live/mod.rs` `sf1()`.
 */
import dgram from 'node:dgram';
import { once } from 'node:events';

const SERVICE_TYPE = { seal: 1, grpc: 2, graphql: 3 } as const;
const NETWORK = { testnet: 0, mainnet: 1 } as const;

export interface Sf1 {
  customerId: number;
  service: keyof typeof SERVICE_TYPE;
  network: keyof typeof NETWORK;
  /** The API key's fingerprint (`GET /keys`), or none. */
  fingerprint?: number;
  /** 1 guaranteed, 2 burst (billable); 3–6 refused (dropped). */
  trafficType: number;
  status: number;
  bytes: number;
  /** Ta, the total time of the request. */
  ms: number;
  /** Default: now. */
  atMs?: number;
}

export function sf1(l: Sf1): string {
  const at = l.atMs ?? Date.now();
  const ts = `${Math.floor(at / 1000)}.${String(at % 1000).padStart(3, '0')}`;
  return [
    'sf1',
    ts,
    'fe_e2e',
    NETWORK[l.network],
    17, // server id
    SERVICE_TYPE[l.service],
    2, // frontend type
    l.customerId,
    '-', // config word
    l.fingerprint ?? '-',
    '-', // key metadata
    l.trafficType,
    0, // event type
    '10.1.2.3',
    l.status,
    l.bytes,
    0, // TR
    0, // Tw
    1, // Tc
    2, // Tr
    l.ms,
    1, // backend server
    '--',
    '/v1/e2e',
  ].join(' ');
}

/** Sends each line as one datagram to the metering process's UDP listener. */
export async function sendLines(lines: readonly string[]): Promise<void> {
  const target = process.env.E2E_INGEST_UDP;
  if (!target) throw new Error('E2E_INGEST_UDP is not set: the "real" server set runs `suiftly run` (e2e/servers.ts)');
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sock = dgram.createSocket('udp4');
  try {
    await Promise.all(
      lines.map((line) => new Promise<void>((resolve, reject) => sock.send(line, port, host, (e) => (e ? reject(e) : resolve())))),
    );
  } finally {
    sock.close();
    await once(sock, 'close');
  }
}

/** The customer id of an access token (its `sub`). */
export function customerIdOf(accessToken: string): number {
  const payload = JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString()) as { sub: string };
  return Number(payload.sub);
}
