/**
 * Sign-in (SPEC section 8): pick a Sui wallet (any wallet-standard wallet that can sign), then
 * sign the server's challenge; the API checks the personal-message signature and starts the
 * session. Two explicit steps: connecting shares the address, signing proves it.
 */
import {
  SuiClientProvider,
  WalletProvider,
  createNetworkConfig,
  useConnectWallet,
  useCurrentAccount,
  useDisconnectWallet,
  useSignPersonalMessage,
  useWallets,
} from '@mysten/dapp-kit';
import { getJsonRpcFullnodeUrl } from '@mysten/sui/jsonRpc';
import { useNavigate, useSearch } from '@tanstack/react-router';
import { useEffect, useState } from 'react';
import { ApiError, api, unwrap } from '../api/client';
import { signedIn } from '../auth/session';
import { useSession } from '../auth/useSession';
import { Alert, Button, shortAddress } from '../components/ui';

type Step = 'idle' | 'connecting' | 'challenge' | 'signing' | 'verifying';

function signInError(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.body.code === 'invalid_signature') return 'The server could not verify the signature. Try again, or use another wallet.';
    if (e.body.code === 'invalid_nonce') return 'The sign-in request expired. Sign again.';
    if (e.body.code === 'rate_limited') return 'Too many attempts: wait a moment and try again.';
    return e.body.message;
  }
  if (e instanceof TypeError) return 'Cannot reach the server: check your connection and try again.';
  const msg = e instanceof Error ? e.message : String(e);
  if (/reject|denied|cancel/i.test(msg)) return 'The wallet declined the request.';
  return msg;
}

// The dashboard never talks to a Sui node (the CSP's connect-src 'self' forbids it); dapp-kit
// needs a network only to name the chain a personal message is signed for.
const { networkConfig } = createNetworkConfig({
  mainnet: { url: getJsonRpcFullnodeUrl('mainnet'), network: 'mainnet' },
});

/**
 * The wallet libraries load with this page only: signed-in pages never need a wallet (the
 * session is the API's), so they stay small.
 */
export function SignInPage() {
  return (
    <SuiClientProvider networks={networkConfig} defaultNetwork="mainnet">
      {/* theme={null}: dapp-kit's injected <style> would need 'unsafe-inline' in the CSP. */}
      <WalletProvider theme={null} autoConnect={false} storage={null}>
        <SignIn />
      </WalletProvider>
    </SuiClientProvider>
  );
}

function SignIn() {
  const wallets = useWallets();
  const account = useCurrentAccount();
  const { mutateAsync: connect } = useConnectWallet();
  const { mutate: disconnect } = useDisconnectWallet();
  const { mutateAsync: signMessage } = useSignPersonalMessage();
  const session = useSession();
  const navigate = useNavigate();
  const search = useSearch({ from: '/signin' });
  const [step, setStep] = useState<Step>('idle');
  const [error, setError] = useState<string | null>(null);
  const target = search.redirect ?? '/';

  useEffect(() => {
    if (session.status === 'signedIn') void navigate({ href: target, replace: true });
  }, [session.status, navigate, target]);

  async function pick(wallet: (typeof wallets)[number]) {
    setError(null);
    setStep('connecting');
    try {
      await connect({ wallet });
      setStep('idle');
    } catch (e) {
      setError(signInError(e));
      setStep('idle');
    }
  }

  async function signIn() {
    if (!account) return;
    setError(null);
    try {
      setStep('challenge');
      const challenge = unwrap(await api.POST('/auth/connect', { body: { walletAddress: account.address } }));
      setStep('signing');
      const signed = await signMessage({ message: new TextEncoder().encode(challenge.message), account });
      setStep('verifying');
      const res = await api.POST('/auth/verify', {
        body: { walletAddress: account.address, signature: signed.signature, nonce: challenge.nonce },
      });
      signedIn(unwrap(res));
    } catch (e) {
      setError(signInError(e));
      setStep('idle');
    }
  }

  const busy = step !== 'idle';
  const stepText: Record<Step, string> = {
    idle: '',
    connecting: 'Waiting for the wallet to connect…',
    challenge: 'Asking the server for a sign-in message…',
    signing: 'Approve the message in your wallet…',
    verifying: 'Checking the signature…',
  };

  return (
    <main className="flex min-h-screen items-center justify-center px-4 py-10">
      <div className="w-full max-w-md rounded-xl bg-white p-6 shadow-sm ring-1 ring-slate-200 sm:p-8">
        <div className="mb-6 flex items-center gap-3">
          <img src="/app/favicon.svg" alt="" className="h-9 w-9" />
          <div>
            <h1 className="text-xl font-semibold">Sign in to Suiftly</h1>
            <p className="text-sm text-slate-600">Your Sui wallet is your account: no password.</p>
          </div>
        </div>

        {session.status === 'signedOut' && session.reason && (
          <div className="mb-4">
            <Alert tone="amber">{session.reason}</Alert>
          </div>
        )}

        {!account ? (
          <section aria-labelledby="wallets-heading" className="flex flex-col gap-3">
            <h2 id="wallets-heading" className="text-sm font-medium text-slate-800">
              1. Connect a wallet
            </h2>
            {wallets.length === 0 ? (
              <Alert tone="blue" title="No Sui wallet found">
                Install a Sui wallet browser extension (for example Slush), then reload this page.
              </Alert>
            ) : (
              <ul className="flex flex-col gap-2">
                {wallets.map((w) => (
                  <li key={w.id ?? w.name}>
                    <button
                      type="button"
                      disabled={busy}
                      onClick={() => void pick(w)}
                      className="flex w-full items-center gap-3 rounded-lg px-3 py-2.5 text-left ring-1 ring-slate-300 hover:bg-slate-50 focus-visible:outline-2 focus-visible:outline-blue-600 disabled:opacity-60"
                    >
                      <img src={w.icon} alt="" className="h-7 w-7 rounded" />
                      <span className="font-medium">{w.name}</span>
                    </button>
                  </li>
                ))}
              </ul>
            )}
          </section>
        ) : (
          <section aria-labelledby="sign-heading" className="flex flex-col gap-3">
            <h2 id="sign-heading" className="text-sm font-medium text-slate-800">
              2. Sign the sign-in message
            </h2>
            <p className="text-sm text-slate-600">
              Connected as <span className="font-mono text-slate-900" title={account.address}>{shortAddress(account.address)}</span>.
              Signing proves you own this address; it moves no funds.
            </p>
            <Button onClick={() => void signIn()} busy={busy} className="w-full">
              Sign in
            </Button>
            <Button variant="ghost" disabled={busy} onClick={() => disconnect()} className="w-full">
              Use another wallet
            </Button>
          </section>
        )}

        <p aria-live="polite" className="mt-4 min-h-5 text-sm text-slate-600">
          {stepText[step]}
        </p>
        {error && <Alert tone="red">{error}</Alert>}
      </div>
    </main>
  );
}
