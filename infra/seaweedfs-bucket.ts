/** Creating the bucket of a ferry store on a SeaweedFS server (ferry itself never creates buckets). */
import { BucketAlreadyOwnedByYou, CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

/** Where the server is and how to sign for it. */
export interface S3ServerAccess {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** Creates `bucket` unless it exists already (idempotent). */
export async function createBucket(server: S3ServerAccess, bucket: string): Promise<void> {
  const { endpoint, region, accessKeyId, secretAccessKey } = server;
  const client = new S3Client({
    endpoint,
    region,
    credentials: { accessKeyId, secretAccessKey },
    forcePathStyle: true,
    defaultsMode: 'standard',
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (err) {
    if (!(err instanceof BucketAlreadyOwnedByYou) && (err as Error).name !== 'BucketAlreadyExists') throw err;
  } finally {
    client.destroy();
  }
}
