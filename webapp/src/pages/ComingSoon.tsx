import { Link } from '@tanstack/react-router';
import { serviceLabel } from '../api/client';
import { Badge, Card, PageHeader } from '../components/ui';

const blurbs: Record<string, string> = {
  ssfn: 'SSFN is reserved for a service that is not on sale yet.',
  sealo: 'Sealo is reserved for a Seal variant that is not on sale yet.',
};

export function ComingSoon({ service }: { service: string }) {
  return (
    <>
      <PageHeader title={serviceLabel(service)} description={<Badge tone="blue">Coming soon</Badge>} />
      <Card>
        <p className="text-slate-700">{blurbs[service] ?? 'This service is not available yet.'}</p>
        <p className="mt-2 text-sm text-slate-600">
          Nothing to configure here for now. Meanwhile,{' '}
          <Link to="/services/$service" params={{ service: 'seal' }} className="text-blue-700 underline">
            Seal
          </Link>
          ,{' '}
          <Link to="/services/$service" params={{ service: 'grpc' }} className="text-blue-700 underline">
            gRPC
          </Link>{' '}
          and{' '}
          <Link to="/services/$service" params={{ service: 'graphql' }} className="text-blue-700 underline">
            GraphQL
          </Link>{' '}
          are available.
        </p>
      </Card>
    </>
  );
}
