/** TanStack Query hooks over the typed client: one place for query keys and invalidation. */
import { keepPreviousData, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import type { Range } from '../lib/usage';
import { api, unwrap, type ServiceConfig, type ServiceName } from './client';

export const keys = {
  services: ['services'] as const,
  balance: ['balance'] as const,
  apiKeys: (includeRevoked: boolean) => ['keys', includeRevoked] as const,
  quote: (service: string, config: ServiceConfig) => ['quote', service, config] as const,
  invoices: ['billing', 'invoices'] as const,
  invoice: (id: number) => ['billing', 'invoice', id] as const,
  current: ['billing', 'current'] as const,
  transactions: ['billing', 'transactions'] as const,
  stats: (range: Range, service: ServiceName | 'all') => ['stats', range, service] as const,
};

/** How often the billing views re-ask while open ("live": the manager bills on its own). */
const LIVE_MS = 10_000;

async function fetchServices() {
  return unwrap(await api.GET('/services'));
}

export function useServices() {
  return useQuery({ queryKey: keys.services, queryFn: fetchServices, select: (d) => d.services });
}

/** The billing suspension of the account (null when not suspended), from `GET /services`. */
export function useSuspension() {
  return useQuery({ queryKey: keys.services, queryFn: fetchServices, select: (d) => d.suspension, refetchInterval: LIVE_MS });
}

export function useInvoices() {
  return useQuery({
    queryKey: keys.invoices,
    queryFn: async () => unwrap(await api.GET('/billing/invoices')).invoices,
    refetchInterval: LIVE_MS,
  });
}

export function useInvoice(id: number, enabled: boolean) {
  return useQuery({
    queryKey: keys.invoice(id),
    queryFn: async () => unwrap(await api.GET('/billing/invoices/{invoice_id}', { params: { path: { invoice_id: id } } })),
    enabled,
  });
}

/** This month so far: the draft invoice's lines plus settled usage not on a line yet. */
export function useCurrentCharges() {
  return useQuery({
    queryKey: keys.current,
    queryFn: async () => unwrap(await api.GET('/billing/current')),
    refetchInterval: LIVE_MS,
  });
}

export function useTransactions() {
  return useQuery({
    queryKey: keys.transactions,
    queryFn: async () => unwrap(await api.GET('/billing/transactions', { params: { query: { limit: 50 } } })),
    refetchInterval: LIVE_MS,
  });
}

export function useBalance() {
  return useQuery({
    queryKey: keys.balance,
    queryFn: async () => unwrap(await api.GET('/billing/balance')),
    // The manager charges on its own (after a deposit, an enable, at the month's end).
    refetchInterval: LIVE_MS,
  });
}

export function useApiKeys(includeRevoked: boolean) {
  return useQuery({
    queryKey: keys.apiKeys(includeRevoked),
    queryFn: async () =>
      unwrap(await api.GET('/keys', { params: { query: includeRevoked ? { include_revoked: true } : {} } })).keys,
  });
}

/** The live price of a proposed configuration (re-asked when the configuration changes). */
export function useQuote(service: ServiceName, config: ServiceConfig, enabled = true) {
  return useQuery({
    queryKey: keys.quote(service, config),
    queryFn: async () =>
      unwrap(await api.POST('/services/{service}/quote', { params: { path: { service } }, body: config })),
    placeholderData: keepPreviousData,
    enabled,
    staleTime: 5_000,
  });
}

function useInvalidate() {
  const qc = useQueryClient();
  return (...what: ('services' | 'balance' | 'keys' | 'quote' | 'billing')[]) =>
    Promise.all(what.map((k) => qc.invalidateQueries({ queryKey: [k] })));
}

export function useSaveService(service: ServiceName) {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: async (v: { config: ServiceConfig; enable: boolean }) => {
      const saved = unwrap(
        await api.PUT('/services/{service}/config', { params: { path: { service } }, body: v.config }),
      );
      if (!v.enable) return saved;
      return unwrap(await api.POST('/services/{service}/enable', { params: { path: { service } } }));
    },
    onSettled: () => invalidate('services', 'quote', 'keys', 'billing', 'balance'),
  });
}

export function useDisableService(service: ServiceName) {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: async () => unwrap(await api.POST('/services/{service}/disable', { params: { path: { service } } })),
    onSettled: () => invalidate('services', 'quote'),
  });
}

export function useMoveFunds(kind: 'deposit' | 'withdraw') {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: async (v: { amount_usd_cents: number; idempotency_key: string }) =>
      unwrap(
        kind === 'deposit'
          ? await api.POST('/billing/deposit', { body: v })
          : await api.POST('/billing/withdraw', { body: v }),
      ),
    onSettled: () => invalidate('balance', 'quote', 'billing', 'services'),
  });
}

export function useSetLimit() {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: async (max_monthly_usd_cents: number) =>
      unwrap(await api.PUT('/billing/limit', { body: { max_monthly_usd_cents } })),
    onSettled: () => invalidate('balance', 'quote', 'billing', 'services'),
  });
}

export function useCreateKey() {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: async (body: { service: ServiceName; network: 'mainnet' | 'testnet'; access?: 'open' | 'permission' }) =>
      unwrap(await api.POST('/keys', { body })),
    onSettled: () => invalidate('keys', 'services'),
  });
}

export function useRegenerateKey() {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: async (key_id: number) =>
      unwrap(await api.POST('/keys/{key_id}/regenerate', { params: { path: { key_id } } })),
    onSettled: () => invalidate('keys', 'services'),
  });
}

export function useRevokeKey() {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: async (key_id: number) => {
      const r = await api.DELETE('/keys/{key_id}', { params: { path: { key_id } } });
      if (!r.response.ok) unwrap(r);
    },
    onSettled: () => invalidate('keys', 'services'),
  });
}

/**
 * The four usage series of one window, fetched together so the page never joins series of
 * two different windows (while the range changes, the previous set stays shown). Kept
 * current by the live stream (the usage page invalidates `['stats']` on its events); polled
 * only while the stream is down (`poll`), so new data still shows.
 */
export function useUsageSeries(range: Range, service: ServiceName | 'all', poll: boolean) {
  return useQuery({
    queryKey: keys.stats(range, service),
    queryFn: async () => {
      const query = service === 'all' ? { range } : { range, service };
      const [traffic, usage, bandwidth, responseTime] = await Promise.all([
        api.GET('/stats/traffic', { params: { query } }).then(unwrap),
        api.GET('/stats/usage', { params: { query } }).then(unwrap),
        api.GET('/stats/bandwidth', { params: { query } }).then(unwrap),
        api.GET('/stats/response-time', { params: { query } }).then(unwrap),
      ]);
      return { traffic, usage, bandwidth, responseTime };
    },
    placeholderData: keepPreviousData,
    refetchInterval: poll ? 30_000 : false,
  });
}
