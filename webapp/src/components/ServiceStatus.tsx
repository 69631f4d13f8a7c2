import type { Service } from '../api/client';
import { Badge } from './ui';

/**
 * Active / disabled / not enabled. A configured service that was never enabled (a refused
 * first enable leaves its configuration behind) is "not enabled", not "disabled".
 * (Suspension arrives with the billing endpoints.)
 */
export function ServiceStatus({ service }: { service: Service | undefined }) {
  if (service?.is_enabled) return <Badge tone="green">Active</Badge>;
  if (service?.disabled_at) return <Badge tone="amber">Disabled</Badge>;
  return <Badge tone="gray">Not enabled</Badge>;
}
