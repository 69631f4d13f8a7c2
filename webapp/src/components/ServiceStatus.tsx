import type { Service } from '../api/client';
import { Badge } from './ui';

/**
 * Active / disabled / not enabled. A configured service that was never enabled (a refused
 * first enable leaves its configuration behind) is "not enabled", not "disabled".
 * An enabled service the billing suspended (`suspended`) says so, with the reason.
 */
export function ServiceStatus({ service }: { service: Service | undefined }) {
  if (service?.suspended) {
    return <Badge tone="red">{service.suspension_reason === 'monthly_limit_reached' ? 'Suspended: monthly limit' : 'Suspended: balance'}</Badge>;
  }
  if (service?.is_enabled) return <Badge tone="green">Active</Badge>;
  if (service?.disabled_at) return <Badge tone="amber">Disabled</Badge>;
  return <Badge tone="gray">Not enabled</Badge>;
}
