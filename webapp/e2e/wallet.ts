/**
 * A Sui wallet for the browser tests, registered into the unmodified production build through
 * the wallet standard (`wallet-standard:register-wallet` / `wallet-standard:app-ready`), the
 * way a browser extension does it. The key never enters the page: signing happens in the test
 * process (`page.exposeFunction`) with a fixed Ed25519 seed, so the API verifies real Sui
 * personal-message signatures (no MOCK_AUTH).
 *
 * dapp-kit lists only wallets that can sign transactions, so a stub `sui:signTransaction` is
 * declared (it refuses).
 */
import { Ed25519Keypair } from '@mysten/sui/keypairs/ed25519';
import type { Page } from '@playwright/test';
import { createHash } from 'node:crypto';

export type WalletMode = 'valid' | 'bogus-signature' | 'reject';

export interface TestWallet {
  address: string;
  name: string;
  /** How many messages were signed (the test can assert the wallet was really asked). */
  signed: () => number;
}

/** A deterministic 32-byte seed per label (a test's title): distinct customers per test. */
export function seedFor(label: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(label).digest());
}

export const WALLET_NAME = 'Suiftly Test Wallet';

export async function installWallet(page: Page, seed: Uint8Array, mode: WalletMode = 'valid'): Promise<TestWallet> {
  const keypair = Ed25519Keypair.fromSecretKey(seed);
  const address = keypair.getPublicKey().toSuiAddress();
  let count = 0;
  await page.exposeFunction('__suiftlyTestWalletSign', async (messageB64: string) => {
    if (mode === 'reject') throw new Error('User rejected the request');
    const { bytes, signature } = await keypair.signPersonalMessage(Buffer.from(messageB64, 'base64'));
    count++;
    if (mode === 'bogus-signature') {
      // Same shape (flag, 64-byte signature, public key), wrong signature bytes.
      const raw = Buffer.from(signature, 'base64');
      for (let i = 1; i < 65; i++) raw[i] = raw[i]! ^ 0x5a;
      return { bytes, signature: raw.toString('base64') };
    }
    return { bytes, signature };
  });
  await page.addInitScript(registerWallet, {
    address,
    publicKey: Array.from(keypair.getPublicKey().toRawBytes()),
    name: WALLET_NAME,
  });
  return { address, name: WALLET_NAME, signed: () => count };
}

/** Runs in the page before its scripts: the wallet side of the wallet-standard handshake. */
function registerWallet({ address, publicKey, name }: { address: string; publicKey: number[]; name: string }) {
  type Listener = (props: { accounts: unknown[] }) => void;
  const icon =
    'data:image/svg+xml;base64,' +
    btoa('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#0ea5e9"/></svg>');
  const chains = ['sui:mainnet', 'sui:testnet', 'sui:devnet', 'sui:localnet'] as const;
  const account = {
    address,
    publicKey: new Uint8Array(publicKey),
    chains,
    features: ['sui:signPersonalMessage'],
    label: 'Test account',
    icon,
  };
  let accounts: (typeof account)[] = [];
  const listeners = new Set<Listener>();
  const changed = () => listeners.forEach((l) => l({ accounts }));
  const toB64 = (u8: Uint8Array) => {
    let s = '';
    for (const b of u8) s += String.fromCharCode(b);
    return btoa(s);
  };
  const sign = (window as unknown as { __suiftlyTestWalletSign: (m: string) => Promise<{ bytes: string; signature: string }> })
    .__suiftlyTestWalletSign;
  const wallet = {
    version: '1.0.0',
    name,
    icon,
    chains,
    get accounts() {
      return accounts;
    },
    features: {
      'standard:connect': {
        version: '1.0.0',
        connect: () => {
          accounts = [account];
          changed();
          return Promise.resolve({ accounts });
        },
      },
      'standard:disconnect': {
        version: '1.0.0',
        disconnect: () => {
          accounts = [];
          changed();
          return Promise.resolve();
        },
      },
      'standard:events': {
        version: '1.0.0',
        on: (_event: string, l: Listener) => {
          listeners.add(l);
          return () => listeners.delete(l);
        },
      },
      'sui:signPersonalMessage': {
        version: '1.1.0',
        signPersonalMessage: async ({ message }: { message: Uint8Array }) => sign(toB64(message)),
      },
      'sui:signTransaction': {
        version: '2.0.0',
        signTransaction: () => Promise.reject(new Error('the test wallet signs no transactions')),
      },
    },
  };
  const callback = (api: { register: (w: unknown) => void }) => api.register(wallet);
  try {
    window.dispatchEvent(new CustomEvent('wallet-standard:register-wallet', { detail: callback }));
  } catch (e) {
    console.error('test wallet: register event failed', e);
  }
  window.addEventListener('wallet-standard:app-ready', (e) =>
    callback((e as CustomEvent<{ register: (w: unknown) => void }>).detail),
  );
}
