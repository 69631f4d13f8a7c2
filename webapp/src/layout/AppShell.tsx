/**
 * The signed-in frame: a header with the wallet widget (address, escrow balance, deposit,
 * withdraw, sign out), the sidebar, and the page. Below the `lg` breakpoint the sidebar
 * becomes a menu opened from the header.
 */
import { useQueryClient } from '@tanstack/react-query';
import { Link, Outlet, useLocation, useNavigate, useRouter } from '@tanstack/react-router';
import { useEffect, useRef, useState } from 'react';
import { serviceLabel } from '../api/client';
import { useBalance } from '../api/queries';
import { signOut } from '../auth/session';
import { useSession } from '../auth/useSession';
import { FundsDialog, type FundsKind } from '../components/FundsDialog';
import { Button, CopyButton, cx, shortAddress } from '../components/ui';
import { formatCents } from '../lib/money';

const nav: { to: string; label: string; soon?: boolean; section?: string }[] = [
  { to: '/', label: 'Overview' },
  { to: '/usage', label: 'Usage' },
  { to: '/services/seal', label: serviceLabel('seal'), section: 'Services' },
  { to: '/services/grpc', label: serviceLabel('grpc') },
  { to: '/services/graphql', label: serviceLabel('graphql') },
  { to: '/services/ssfn', label: serviceLabel('ssfn'), soon: true },
  { to: '/services/sealo', label: serviceLabel('sealo'), soon: true },
  { to: '/keys', label: 'API keys', section: 'Account' },
  { to: '/billing', label: 'Billing' },
];

function Sidebar({ onNavigate }: { onNavigate?: () => void }) {
  const { pathname } = useLocation();
  return (
    <nav aria-label="Main" className="flex flex-col gap-0.5 p-3">
      {nav.map((item) => {
        const active = item.to === '/' ? pathname === '/' : pathname.startsWith(item.to);
        return (
          <div key={item.to}>
            {item.section && <p className="mt-3 mb-1 px-3 text-xs font-semibold tracking-wide text-slate-500 uppercase">{item.section}</p>}
            <Link
              to={item.to}
              onClick={onNavigate}
              aria-current={active ? 'page' : undefined}
              className={cx(
                'flex items-center justify-between rounded-md px-3 py-2 text-sm focus-visible:outline-2 focus-visible:outline-blue-600',
                active ? 'bg-blue-50 font-medium text-blue-700' : 'text-slate-700 hover:bg-slate-100',
              )}
            >
              {item.label}
              {item.soon && <span className="text-xs text-slate-400">soon</span>}
            </Link>
          </div>
        );
      })}
    </nav>
  );
}

function WalletWidget({ onFunds }: { onFunds: (k: FundsKind) => void }) {
  const session = useSession();
  const balance = useBalance();
  const [open, setOpen] = useState(false);
  const panel = useRef<HTMLDivElement>(null);
  const qc = useQueryClient();
  const address = session.status === 'signedIn' ? session.walletAddress : '';

  useEffect(() => {
    if (!open) return;
    const close = (e: MouseEvent | KeyboardEvent) => {
      if (e instanceof KeyboardEvent ? e.key === 'Escape' : !panel.current?.contains(e.target as Node)) setOpen(false);
    };
    document.addEventListener('mousedown', close);
    document.addEventListener('keydown', close);
    return () => {
      document.removeEventListener('mousedown', close);
      document.removeEventListener('keydown', close);
    };
  }, [open]);

  async function doSignOut() {
    setOpen(false);
    await signOut(); // AppShell sees the signed-out session and leaves for /signin
    qc.clear();
  }

  const balanceText = balance.data ? formatCents(balance.data.balance_usd_cents) : balance.isError ? 'unavailable' : '…';

  return (
    <div className="flex items-center gap-2" ref={panel}>
      <div className="hidden text-right sm:block">
        <p className="text-xs text-slate-500">Escrow balance</p>
        <p className="text-sm font-semibold" data-testid="header-balance">
          {balanceText}
        </p>
      </div>
      <div className="hidden gap-2 md:flex">
        <Button variant="secondary" onClick={() => onFunds('deposit')}>
          Deposit
        </Button>
        <Button variant="secondary" onClick={() => onFunds('withdraw')}>
          Withdraw
        </Button>
      </div>
      <div className="relative">
        <Button
          variant="ghost"
          aria-haspopup="true"
          aria-expanded={open}
          aria-label={`Wallet ${address}`}
          onClick={() => setOpen((o) => !o)}
          className="ring-1 ring-slate-300"
        >
          <span className="h-2 w-2 rounded-full bg-green-500" aria-hidden="true" />
          <span className="font-mono">{shortAddress(address)}</span>
        </Button>
        {open && (
          <div className="absolute right-0 z-30 mt-2 flex w-72 max-w-[calc(100vw-2rem)] flex-col gap-3 rounded-lg bg-white p-4 shadow-lg ring-1 ring-slate-200">
            <div>
              <p className="text-xs text-slate-500">Wallet address</p>
              <p className="font-mono text-xs break-all">{address}</p>
            </div>
            <CopyButton text={address} label="Copy address" />
            <div className="sm:hidden">
              <p className="text-xs text-slate-500">Escrow balance</p>
              <p className="text-sm font-semibold" data-testid="menu-balance">
                {balanceText}
              </p>
            </div>
            <div className="flex gap-2 md:hidden">
              <Button variant="secondary" className="flex-1" onClick={() => (setOpen(false), onFunds('deposit'))}>
                Deposit
              </Button>
              <Button variant="secondary" className="flex-1" onClick={() => (setOpen(false), onFunds('withdraw'))}>
                Withdraw
              </Button>
            </div>
            <Button variant="danger" onClick={() => void doSignOut()}>
              Sign out
            </Button>
          </div>
        )}
      </div>
    </div>
  );
}

export function AppShell() {
  const session = useSession();
  const navigate = useNavigate();
  const router = useRouter();
  const [menu, setMenu] = useState(false);
  const [funds, setFunds] = useState<FundsKind | null>(null);
  const left = useRef(false);

  // Signed out while a page is open: a sign-out leaves for /signin; a session that ended on
  // its own (refresh refused) comes back to this page after signing in again.
  useEffect(() => {
    if (session.status !== 'signedOut' || left.current) return;
    left.current = true;
    const search = session.reason ? { redirect: router.state.location.href } : {};
    void navigate({ to: '/signin', search, replace: true });
  }, [session, navigate, router]);

  return (
    <div className="min-h-screen">
      <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:top-2 focus:left-2 focus:z-50 focus:rounded focus:bg-white focus:p-2">
        Skip to content
      </a>
      <header className="sticky top-0 z-20 border-b border-slate-200 bg-white/95 backdrop-blur">
        <div className="flex h-14 items-center gap-2 px-3 sm:px-4">
          <button
            type="button"
            className="rounded-md p-2 text-slate-700 hover:bg-slate-100 focus-visible:outline-2 focus-visible:outline-blue-600 lg:hidden"
            aria-label="Menu"
            aria-expanded={menu}
            aria-controls="mobile-nav"
            onClick={() => setMenu((m) => !m)}
          >
            <svg viewBox="0 0 20 20" className="h-5 w-5" aria-hidden="true">
              <path d="M3 5h14M3 10h14M3 15h14" stroke="currentColor" strokeWidth="1.8" strokeLinecap="round" />
            </svg>
          </button>
          <Link to="/" className="flex items-center gap-2 font-semibold text-slate-900">
            <img src="/app/favicon.svg" alt="" className="h-7 w-7" />
            <span className="hidden min-[420px]:inline">Suiftly</span>
          </Link>
          <div className="ml-auto">
            <WalletWidget onFunds={setFunds} />
          </div>
        </div>
        {menu && (
          <div id="mobile-nav" className="border-t border-slate-200 bg-white lg:hidden">
            <Sidebar onNavigate={() => setMenu(false)} />
          </div>
        )}
      </header>
      <div className="flex">
        {/* The column carries the background and border down a long page; the menu stays in view. */}
        <div className="hidden w-56 shrink-0 border-r border-slate-200 bg-white lg:block">
          <aside className="sticky top-14 h-[calc(100vh-3.5rem)] overflow-y-auto">
            <Sidebar />
          </aside>
        </div>
        <main id="main" className="w-full max-w-5xl min-w-0 flex-1 p-4 sm:p-6">
          <Outlet />
        </main>
      </div>
      <FundsDialog kind={funds ?? 'deposit'} open={funds !== null} onClose={() => setFunds(null)} />
    </div>
  );
}
