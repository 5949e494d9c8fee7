using System.Net;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Polly;
using Polly.Retry;
using ProxyBackup.Repository;

namespace ProxyBackup.ObjectStorage;

/// <summary>
/// The few S3 calls a repository makes, on one bucket under one prefix, synchronous for the stores'
/// interfaces. Server errors, throttling (503 SlowDown) and broken connections are retried with
/// Polly, with exponential backoff and jitter (docs/repository-format.md, "S3"); what still fails
/// is an <see cref="IOException"/>, what the operator must fix (credentials, a missing bucket) a
/// <see cref="RepositoryException"/>. Messages name the key, never a credential.
/// </summary>
internal sealed class S3Bucket
{
    private readonly IAmazonS3 _client;
    private readonly ResiliencePipeline _retries;

    public S3Bucket(S3Location location, S3Credentials credentials, int retries = 6, TimeSpan? firstDelay = null)
    {
        Location = location;
        var config = new AmazonS3Config
        {
            ServiceURL = location.Endpoint.ToString(),
            ForcePathStyle = location.PathStyle,
            AuthenticationRegion = location.Region,
            // Polly retries (below); the SDK's own retries would multiply them.
            MaxErrorRetry = 0,
            Timeout = TimeSpan.FromMinutes(2),
            // Checksums only where S3 requires them: Ceph's radosgw before 19 and other
            // S3-compatible servers refuse the trailing checksums newer SDKs send by default.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        };
        _client = new AmazonS3Client(new BasicAWSCredentials(credentials.AccessKeyId, credentials.SecretAccessKey), config);
        _retries = new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(IsTransient),
                MaxRetryAttempts = retries,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = firstDelay ?? TimeSpan.FromMilliseconds(200),
                MaxDelay = TimeSpan.FromSeconds(20),
            })
            .Build();
        // The stores are synchronous and their callers (the pipelines' workers) block on each call:
        // enough pool threads at once that the HTTP completions they wait for are not starved.
        ThreadPool.GetMinThreads(out var workers, out var io);
        if (workers < 64) ThreadPool.SetMinThreads(64, io);
    }

    public S3Location Location { get; }

    /// <summary>Retried: server errors, throttling, timeouts, broken connections. Not: what is refused (403, 404, 412) or malformed.</summary>
    internal static bool IsTransient(Exception e) => e switch
    {
        AmazonS3Exception s3 => (int)s3.StatusCode >= 500 || s3.StatusCode == HttpStatusCode.TooManyRequests || s3.ErrorCode is "SlowDown" or "RequestTimeout" or "Throttling",
        AmazonServiceException service => service.InnerException is HttpRequestException or IOException or TimeoutException || (int)service.StatusCode >= 500,
        HttpRequestException or IOException or TimeoutException => true,
        TaskCanceledException => true, // the SDK's own timeout; the caller's cancellation is not retried (Polly stops on it)
        _ => false,
    };

    public string Key(string name) => Location.Prefix + name;

    /// <summary>The object's content, or null when it is not there.</summary>
    public byte[]? Get(string name) => Run("read", name, async ct =>
    {
        try
        {
            using var response = await _client.GetObjectAsync(Location.Bucket, Key(name), ct).ConfigureAwait(false);
            using var memory = new MemoryStream(response.ContentLength is > 0 and < int.MaxValue ? (int)response.ContentLength : 0);
            await response.ResponseStream.CopyToAsync(memory, ct).ConfigureAwait(false);
            return memory.ToArray();
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
        {
            return null;
        }
    });

    /// <summary>Reads the object into <paramref name="buffer"/>; its length, or -1 when it is not there, or -2 when it is larger than the buffer.</summary>
    public int GetInto(string name, byte[] buffer) => Run("read", name, async ct =>
    {
        try
        {
            using var response = await _client.GetObjectAsync(Location.Bucket, Key(name), ct).ConfigureAwait(false);
            if (response.ContentLength > buffer.Length) return -2;
            var read = 0;
            int n;
            while (read < buffer.Length && (n = await response.ResponseStream.ReadAsync(buffer.AsMemory(read), ct).ConfigureAwait(false)) > 0) read += n;
            // A short body is a broken connection: retried.
            if (read != response.ContentLength) throw new IOException($"S3 returned {read} of {response.ContentLength} bytes of {Key(name)}.");
            return read;
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
        {
            return -1;
        }
    });

    /// <summary>
    /// Length and time of an object, or null when it is not there: its last modification, or the
    /// time a touch recorded in its metadata when that is later (S3 servers differ in whether a
    /// copy onto itself changes the former).
    /// </summary>
    public (long Length, DateTimeOffset Time)? Head(string name) => Run("look at", name, async ct =>
    {
        try
        {
            var response = await _client.GetObjectMetadataAsync(new GetObjectMetadataRequest { BucketName = Location.Bucket, Key = Key(name) }, ct).ConfigureAwait(false);
            var modified = ToOffset(response.LastModified);
            var touched = long.TryParse(response.Metadata[TouchedHeader], out var ms) ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : modified;
            return ((long Length, DateTimeOffset Time)?)(response.ContentLength, touched > modified ? touched : modified);
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
        {
            return null;
        }
    });

    private const string TouchedHeader = "x-amz-meta-touched";

    /// <summary>Writes an object whole (S3 never shows a part of one); with <paramref name="touched"/>, that time in its metadata (<see cref="Head"/>).</summary>
    public void Put(string name, byte[] content, int length, DateTimeOffset? touched = null) => Run("write", name, async ct =>
    {
        using var body = new MemoryStream(content, 0, length, writable: false);
        var request = new PutObjectRequest { BucketName = Location.Bucket, Key = Key(name), InputStream = body, AutoCloseStream = false, UseChunkEncoding = false, DisablePayloadSigning = false };
        if (touched is { } time) request.Metadata[TouchedHeader] = time.ToUnixTimeMilliseconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
        await _client.PutObjectAsync(request, ct).ConfigureAwait(false);
        return true;
    });

    /// <summary>
    /// Copies an object onto itself with <paramref name="time"/> in its metadata (S3 has no other way
    /// to give an object a time): <see cref="Head"/> then tells it. False when it is not there.
    /// </summary>
    public bool Touch(string name, DateTimeOffset time) => Copy(name, name, time);

    /// <summary>Server-side copy, with <paramref name="time"/> as its touch time; false when the source is not there.</summary>
    public bool Copy(string from, string to, DateTimeOffset time) => Run("copy", from, async ct =>
    {
        try
        {
            var request = new CopyObjectRequest
            {
                SourceBucket = Location.Bucket, SourceKey = Key(from), DestinationBucket = Location.Bucket, DestinationKey = Key(to),
                MetadataDirective = S3MetadataDirective.REPLACE,
            };
            request.Metadata[TouchedHeader] = time.ToUnixTimeMilliseconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
            await _client.CopyObjectAsync(request, ct).ConfigureAwait(false);
            return true;
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
        {
            return false;
        }
    });

    public void Delete(string name) => Run("remove", name, async ct =>
    {
        await _client.DeleteObjectAsync(Location.Bucket, Key(name), ct).ConfigureAwait(false);
        return true;
    });

    /// <summary>
    /// The objects under <paramref name="folder"/> (names relative to the prefix), with their length
    /// and last modification; with <paramref name="delimited"/>, only those directly in it, and the
    /// sub-folders as names ending in '/'.
    /// </summary>
    public IEnumerable<(string Name, long Length, DateTimeOffset LastModified)> List(string folder, bool delimited = false)
    {
        string? token = null;
        do
        {
            var request = new ListObjectsV2Request { BucketName = Location.Bucket, Prefix = Key(folder), ContinuationToken = token, Delimiter = delimited ? "/" : null };
            var page = Run("list", folder, ct => _client.ListObjectsV2Async(request, ct));
            foreach (var o in page.S3Objects ?? [])
                yield return (o.Key[Location.Prefix.Length..], o.Size ?? 0, ToOffset(o.LastModified));
            foreach (var p in page.CommonPrefixes ?? [])
                yield return (p[Location.Prefix.Length..], 0, default);
            token = page.IsTruncated == true ? page.NextContinuationToken : null;
        } while (token is not null);
    }

    /// <summary>Creates the bucket when it does not exist (repository init, as restic does).</summary>
    public void EnsureBucket() => Run("create the bucket", "", async ct =>
    {
        try
        {
            await _client.PutBucketAsync(new PutBucketRequest { BucketName = Location.Bucket }, ct).ConfigureAwait(false);
        }
        catch (AmazonS3Exception e) when (e.ErrorCode is "BucketAlreadyOwnedByYou" or "BucketAlreadyExists") { }
        return true;
    });

    /// <summary>S3 gives times to the second: an object's is taken as the end of its second, so that GC never judges it older than it is.</summary>
    private static DateTimeOffset ToOffset(DateTime? time) =>
        time is { } t ? new DateTimeOffset(t.ToUniversalTime(), TimeSpan.Zero).AddTicks(TimeSpan.TicksPerSecond - 1 - t.Ticks % TimeSpan.TicksPerSecond) : DateTimeOffset.MinValue;

    private T Run<T>(string what, string name, Func<CancellationToken, Task<T>> call)
    {
        try
        {
            return _retries.ExecuteAsync(async ct => await call(ct).ConfigureAwait(false), CancellationToken.None).AsTask().GetAwaiter().GetResult();
        }
        catch (AmazonS3Exception e) when (e.ErrorCode == "NoSuchBucket")
        {
            throw new BucketMissingException($"The bucket '{Location.Bucket}' does not exist at {Location.Endpoint}: create it, or create the repository with 'repository init' (it creates the bucket).");
        }
        catch (AmazonS3Exception e) when (e.ErrorCode == "RequestTimeTooSkewed")
        {
            throw new RepositoryException($"{Location} refused the request: this machine's clock differs from the S3 server's by more than 15 minutes. Set the time (NTP, chrony) on both.");
        }
        catch (AmazonS3Exception e) when (e.StatusCode is HttpStatusCode.Forbidden or HttpStatusCode.Unauthorized || e.ErrorCode is "InvalidAccessKeyId" or "SignatureDoesNotMatch" or "AccessDenied")
        {
            throw new RepositoryException($"{Location} refused to {what} {Key(name)} ({e.ErrorCode}): check the access key and secret (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the configuration's S3 section) and the bucket's policy.");
        }
        catch (AmazonS3Exception e) when (e.ErrorCode is "QuotaExceeded" or "EntityTooLarge" || e.StatusCode == HttpStatusCode.InsufficientStorage)
        {
            throw new RepositoryFullException(Location.ToString(), e);
        }
        catch (Exception e) when (IsTransient(e))
        {
            throw new IOException($"S3 could not {what} {Key(name)} at {Location.Endpoint} after retries: {e.Message}", e);
        }
        catch (AmazonClientException e)
        {
            // A refusal that is not retried (a malformed request, a region the bucket is not in), or the client's own check.
            throw new IOException($"S3 could not {what} {Key(name)} at {Location.Endpoint}: {e.Message}", e);
        }
    }
}

/// <summary>The location's bucket does not exist (a new repository's init creates it).</summary>
internal sealed class BucketMissingException(string message) : RepositoryException(message);
