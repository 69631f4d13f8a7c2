/** TanStack Query hooks over the typed client: one place for query keys and invalidation. */
import { keepPreviousData, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, unwrap, type ServiceConfig, type ServiceName } from './client';

export const keys = {
  services: ['services'] as const,
  balance: ['balance'] as const,
  apiKeys: (includeRevoked: boolean) => ['keys', includeRevoked] as const,
  quote: (service: string, config: ServiceConfig) => ['quote', service, config] as const,
};

export function useServices() {
  return useQuery({
    queryKey: keys.services,
    queryFn: async () => unwrap(await api.GET('/services')).services,
  });
}

export function useBalance() {
  return useQuery({
    queryKey: keys.balance,
    queryFn: async () => unwrap(await api.GET('/billing/balance')),
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
  return (...what: ('services' | 'balance' | 'keys' | 'quote')[]) =>
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
    onSettled: () => invalidate('services', 'quote', 'keys'),
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
    onSettled: () => invalidate('balance', 'quote'),
  });
}

export function useSetLimit() {
  const invalidate = useInvalidate();
  return useMutation({
    mutationFn: async (max_monthly_usd_cents: number) =>
      unwrap(await api.PUT('/billing/limit', { body: { max_monthly_usd_cents } })),
    onSettled: () => invalidate('balance', 'quote'),
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
