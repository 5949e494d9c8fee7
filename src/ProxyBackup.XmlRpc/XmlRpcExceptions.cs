using ProxyBackup.Contracts;

namespace ProxyBackup.XmlRpc;

/// <summary>Base of every error the XML-RPC layer raises, so callers can catch the layer as a whole.</summary>
public abstract class XmlRpcException : UserFacingException
{
    protected XmlRpcException(string message, Exception? inner = null) : base(message, inner) { }

    /// <summary>The same error with its text scrubbed of secrets (<see cref="SecretScrubber"/>); this one when nothing was found.</summary>
    internal XmlRpcException Scrubbed(SecretScrubber scrubber)
    {
        var message = scrubber.Scrub(Message);
        return message == Message ? this : WithMessage(message, scrubber);
    }

    private protected abstract XmlRpcException WithMessage(string message, SecretScrubber scrubber);
}

/// <summary>The peer answered with a well-formed &lt;fault&gt;.</summary>
public sealed class XmlRpcFaultException : XmlRpcException
{
    public XmlRpcFaultException(int faultCode, string faultString)
        : base($"XML-RPC fault {faultCode}: {faultString}")
    {
        FaultCode = faultCode;
        FaultString = faultString;
    }

    public int FaultCode { get; }
    public string FaultString { get; }

    private protected override XmlRpcException WithMessage(string message, SecretScrubber scrubber) => new XmlRpcFaultException(FaultCode, scrubber.Scrub(FaultString));

    /// <summary>Codes used by xmlrpc-c (and so by oned) and by the simulator.</summary>
    public const int TypeMismatch = -501;
    public const int ParseError = -503;
    public const int NoSuchMethod = -506;
    public const int InternalError = -500;
}

/// <summary>The bytes received are not a valid XML-RPC document (malformed, DTD, wrong shape, too large).</summary>
public sealed class XmlRpcProtocolException : XmlRpcException
{
    public XmlRpcProtocolException(string message, Exception? inner = null) : base(message, inner) { }

    // The inner exception (a parser's) may quote the document: it stays behind.
    private protected override XmlRpcException WithMessage(string message, SecretScrubber scrubber) => new XmlRpcProtocolException(message);
}

/// <summary>The HTTP exchange failed: connection, TLS, timeout or a non-200 status.</summary>
public sealed class XmlRpcTransportException : XmlRpcException
{
    public XmlRpcTransportException(string message, bool requestMayHaveBeenProcessed, Exception? inner = null, int? httpStatus = null, bool timedOut = false)
        : base(message, inner)
    {
        RequestMayHaveBeenProcessed = requestMayHaveBeenProcessed;
        HttpStatus = httpStatus;
        TimedOut = timedOut;
    }

    /// <summary>The whole reply did not arrive within the call's deadline (a silent or slow-loris server): not worth repeating.</summary>
    public bool TimedOut { get; }

    /// <summary>
    /// False only when the request certainly never reached the server (connection refused, name
    /// not resolved): the one case where repeating a call that creates something is safe.
    /// </summary>
    public bool RequestMayHaveBeenProcessed { get; }

    public int? HttpStatus { get; }

    private protected override XmlRpcException WithMessage(string message, SecretScrubber scrubber) =>
        new XmlRpcTransportException(message, RequestMayHaveBeenProcessed, null, HttpStatus, TimedOut);
}
