"""Extra cells beyond the zoo, each exercising a corner of the language."""

CORPUS = {
    "custom_nonlinearity": """
        # a custom nonlinearity from a formula; its derivative comes from SymPy
        cell custom
        nonlinearity mysoft(u) = u / (1 + abs(u))
        nonlinearity swish(v) = v * sigmoid(v)
        input x[n_in]
        state h[n]
        a = swish(W @ [x, h] + b)
        h' = mysoft(a) * 0.5 + 0.5 * tanh(U @ h)
        output h'
    """,
    "all_builtins": """
        input x[n_in]
        state h[n]
        p = W @ [x, h] + b
        q = relu(p) + softplus(p) - softsign(p) + hard_sigmoid(p) + identity(p)
        h' = tanh(q) * sigmoid(V @ h)
        output h'
    """,
    "output_layer": """
        # a readout with its own size, declared by a param line
        input x[n_in]
        state h[n]
        param W_y[n_y, n]
        h' = tanh(W @ [x, h] + b)
        output y = W_y @ h' + b_y
        output h'
    """,
    "two_inputs": """
        input x[n_in], u[m]
        state h[n]
        h' = tanh(W @ x + V @ u + U @ h) * (1 - sigmoid(G @ [x, u]))
        output h'
    """,
    "integer_sizes": """
        input x[3]
        state h[4], c[4]
        z = sigmoid(W @ [x, h, c])
        c' = z * c + (1 - z) * tanh(V @ x)
        h' = -c' + 2 * h / 4
        output h', c'
    """,
    "feedforward": """
        # no state: a per-step map
        input x[n_in]
        param A[n, n_in], B[n, n]
        y1 = tanh(A @ x + a)
        output y = B @ y1 - y1 * p
    """,
    "shared_weights": """
        input x[n]
        state h[n]
        h' = tanh(W @ x + W @ h + b) * (b + 1)
        output h'
    """,
}
