using ProxyBackup.Contracts;

namespace ProxyBackup.OpenNebula;

/// <summary>The third element of an OpenNebula failure reply (include/Request.h).</summary>
public enum OneErrorCode
{
    Success = 0x0000,
    Authentication = 0x0100,
    Authorization = 0x0200,
    NoExists = 0x0400,
    Action = 0x0800,
    XmlRpcApi = 0x1000,
    Internal = 0x2000,
    Allocate = 0x4000,
    Locked = 0x8000,
    Replication = 0x10000,
}

/// <summary>OpenNebula refused a call. The message is OpenNebula's own text.</summary>
public class OneException : UserFacingException
{
    public OneException(string method, OneErrorCode code, string message, int objectId)
        : base(message)
    {
        Method = method;
        Code = code;
        ObjectId = objectId;
    }

    public string Method { get; }
    public OneErrorCode Code { get; }

    /// <summary>The object that caused the error (VM, image, ...), -1 when none.</summary>
    public int ObjectId { get; }

    /// <summary>
    /// HA front-ends refuse writes while electing or replicating; the same call succeeds later
    /// (docs/opennebula.md, "Replies and errors"). No other refusal is worth repeating blindly.
    /// </summary>
    public bool IsTransient => Code == OneErrorCode.Internal && (
        Message.Contains("no leader found", StringComparison.OrdinalIgnoreCase) ||
        Message.Contains("election mode", StringComparison.OrdinalIgnoreCase) ||
        Message.Contains("is replicating log", StringComparison.OrdinalIgnoreCase) ||
        Message.Contains("zone disabled", StringComparison.OrdinalIgnoreCase));

    internal static OneException From(string method, int code, string message, int objectId) => (OneErrorCode)code switch
    {
        OneErrorCode.Authentication => new OneAuthenticationException(method, message, objectId),
        OneErrorCode.Authorization => new OneAuthorizationException(method, message, objectId),
        OneErrorCode.NoExists => new OneNotFoundException(method, message, objectId),
        OneErrorCode.Action => new OneActionException(method, message, objectId),
        OneErrorCode.Internal => new OneInternalException(method, message, objectId),
        OneErrorCode.Allocate => new OneAllocateException(method, message, objectId),
        OneErrorCode.Locked => new OneLockedException(method, message, objectId),
        _ => new OneException(method, (OneErrorCode)code, message, objectId),
    };
}

public sealed class OneAuthenticationException(string method, string message, int objectId)
    : OneException(method, OneErrorCode.Authentication, message, objectId);

/// <summary>ACLs, quotas (message names the quota), restricted attributes, or a lock.</summary>
public sealed class OneAuthorizationException(string method, string message, int objectId)
    : OneException(method, OneErrorCode.Authorization, message, objectId);

public sealed class OneNotFoundException(string method, string message, int objectId)
    : OneException(method, OneErrorCode.NoExists, message, objectId);

/// <summary>The object is in a state that forbids the operation, or the operation is refused as such.</summary>
public sealed class OneActionException(string method, string message, int objectId)
    : OneException(method, OneErrorCode.Action, message, objectId);

public sealed class OneInternalException(string method, string message, int objectId)
    : OneException(method, OneErrorCode.Internal, message, objectId);

public sealed class OneAllocateException(string method, string message, int objectId)
    : OneException(method, OneErrorCode.Allocate, message, objectId);

public sealed class OneLockedException(string method, string message, int objectId)
    : OneException(method, OneErrorCode.Locked, message, objectId);

/// <summary>OpenNebula answered in a shape the client does not understand (not a failure reply).</summary>
public sealed class OneProtocolException(string message) : UserFacingException(message);

/// <summary>A wait ended in a state that will not turn into the one awaited (a *_FAILURE state, image ERROR, VM DONE).</summary>
public sealed class OneOperationFailedException(string message) : UserFacingException(message);

/// <summary>A wait did not see the awaited state in time. Carries the last state seen.</summary>
public sealed class OneWaitTimeoutException(string message) : UserFacingException(message);
