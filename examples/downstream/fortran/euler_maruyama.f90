! Integrate an exported surrogate SDE dX = b(X) dt + S(X) dW by Euler-Maruyama in Fortran,
! through the C API (module multiscale_surrogate): ensemble-mean drift and the Cholesky factor
! of the ensemble-mean diffusion (member = -1), every path advanced by one batched call per step.
!
!   euler_maruyama FILE [n_paths=1000] [n_steps=1000] [dt=0.01]
!
! Starts every path at x0 = 0. Gaussian increments come from Box-Muller over random_number with
! a fixed seed, so a run is reproducible with a given compiler. Prints, for each slow variable
! i = 0 .. dim-1 (0-based, as the C/C++ examples), at the final time t = n_steps * dt:
!   mean <i> <ensemble mean>
!   var <i> <ensemble variance (divisor n_paths - 1)>
! Exits with status 1 and a message on stderr on any error (bad arguments, unreadable or
! corrupted file, a failed evaluation).
program euler_maruyama
  use, intrinsic :: iso_c_binding, only: c_double
  use, intrinsic :: iso_fortran_env, only: error_unit, output_unit
  use multiscale_surrogate
  implicit none
  type(surrogate_t) :: s
  character(len=:), allocatable :: path, errmsg
  integer :: n_paths, n_steps, m, ierr, k, p, i
  real(c_double) :: dt, sqdt, mean, var
  real(c_double), allocatable :: x(:, :), b(:, :), q(:, :, :), xi(:, :)

  if (command_argument_count() < 1 .or. command_argument_count() > 4) then
    call fail("usage: euler_maruyama FILE [n_paths=1000] [n_steps=1000] [dt=0.01]")
  end if
  path = argument(1)
  n_paths = int_argument(2, 1000, "n_paths")
  n_steps = int_argument(3, 1000, "n_steps")
  dt = real_argument(4, 0.01_c_double, "dt")
  if (n_paths < 1) call fail("n_paths must be at least 1")
  if (n_steps < 0) call fail("n_steps must be non-negative")
  if (.not. (dt > 0.0_c_double .and. dt < huge(dt))) call fail("dt must be positive and finite")

  call surrogate_open(s, path, ierr, errmsg)
  if (ierr /= 0) call fail("cannot open surrogate '" // path // "': " // errmsg)
  m = surrogate_dim(s)
  allocate (x(m, n_paths), b(m, n_paths), q(m, m, n_paths), xi(m, n_paths))
  x = 0.0_c_double
  call seed_generator(12345)
  sqdt = sqrt(dt)

  do k = 1, n_steps
    call surrogate_drift(s, x, -1, b, ierr, errmsg)
    if (ierr == 0) call surrogate_noise(s, x, -1, q, ierr, errmsg)
    if (ierr /= 0) then
      block
        character(len=32) :: step
        write (step, '(i0)') k
        call fail("evaluation failed at step " // trim(step) // ": " // errmsg)
      end block
    end if
    call normals(xi)
    ! q(:, :, p) is the lower-triangular S_ij of path p: dX_i = b_i dt + sum_{j <= i} S_ij dW_j.
    do p = 1, n_paths
      do i = 1, m
        x(i, p) = x(i, p) + b(i, p) * dt + sqdt * sum(q(i, 1:i, p) * xi(1:i, p))
      end do
    end do
  end do

  do i = 1, m
    mean = sum(x(i, :)) / n_paths
    var = 0.0_c_double
    if (n_paths > 1) var = sum((x(i, :) - mean)**2) / (n_paths - 1)
    write (output_unit, '(a, i0, 1x, es24.16e3)') "mean ", i - 1, mean
    write (output_unit, '(a, i0, 1x, es24.16e3)') "var ", i - 1, var
  end do
  call surrogate_close(s)

contains

  subroutine fail(msg)
    character(len=*), intent(in) :: msg
    write (error_unit, '(2a)') "euler_maruyama: error: ", msg
    call surrogate_close(s)
    stop 1
  end subroutine fail

  function argument(i) result(arg)
    integer, intent(in) :: i
    character(len=:), allocatable :: arg
    integer :: n
    call get_command_argument(i, length=n)
    allocate (character(len=n) :: arg)
    if (n > 0) call get_command_argument(i, arg)
  end function argument

  integer function int_argument(i, default, what)
    integer, intent(in) :: i, default
    character(len=*), intent(in) :: what
    character(len=:), allocatable :: text
    integer :: ios
    int_argument = default
    if (command_argument_count() < i) return
    text = argument(i)
    read (text, *, iostat=ios) int_argument
    if (ios /= 0) call fail(what // " must be an integer, got '" // text // "'")
  end function int_argument

  real(c_double) function real_argument(i, default, what)
    integer, intent(in) :: i
    real(c_double), intent(in) :: default
    character(len=*), intent(in) :: what
    character(len=:), allocatable :: text
    integer :: ios
    real_argument = default
    if (command_argument_count() < i) return
    text = argument(i)
    read (text, *, iostat=ios) real_argument
    if (ios /= 0) call fail(what // " must be a number, got '" // text // "'")
  end function real_argument

  !> A fixed, reproducible seed for random_number (whatever the seed size of the compiler).
  subroutine seed_generator(base)
    integer, intent(in) :: base
    integer, allocatable :: seed(:)
    integer :: nseed, l
    call random_seed(size=nseed)
    allocate (seed(nseed))
    seed = [(base + 7919 * l, l = 0, nseed - 1)]
    call random_seed(put=seed)
  end subroutine seed_generator

  !> Fill z with independent standard normals: Box-Muller, both variates of each pair used.
  subroutine normals(z)
    real(c_double), intent(out), contiguous, target :: z(:, :)
    real(c_double), pointer :: f(:)
    real(c_double) :: u(2), r
    real(c_double), parameter :: two_pi = 6.283185307179586476925286766559_c_double
    integer :: l, n
    f(1:size(z)) => z
    n = size(f)
    do l = 1, n, 2
      call random_number(u)
      r = sqrt(-2.0_c_double * log(1.0_c_double - u(1)))  ! 1 - u(1) is in (0, 1]
      f(l) = r * cos(two_pi * u(2))
      if (l < n) f(l + 1) = r * sin(two_pi * u(2))
    end do
  end subroutine normals

end program euler_maruyama
